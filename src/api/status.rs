//! The status object (`StatusResponsePayload`, spec §6): keys always present, in this order.

use serde::Serialize;
use serde_json::Value;

use super::parse_stored_json;
use crate::model::format_status_time;
use crate::store::InstanceRecord;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub name: String,
    pub instance_id: String,
    pub runtime_status: &'static str,
    pub input: Value,
    pub custom_status: Value,
    pub output: Value,
    pub created_time: String,
    pub last_updated_time: String,
    /// Omitted entirely unless history was asked for (and exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_events: Option<Vec<Value>>,
}

impl StatusResponse {
    /// `show_input = false` turns `input` into `null`, as `showInput=false` does.
    pub fn from_record(record: &InstanceRecord, show_input: bool) -> Self {
        Self {
            name: record.name.clone(),
            instance_id: record.instance_id.clone(),
            runtime_status: record.runtime_status.as_str(),
            input: if show_input {
                parse_stored_json(record.input.as_deref())
            } else {
                Value::Null
            },
            custom_status: parse_stored_json(record.custom_status.as_deref()),
            output: parse_stored_json(record.output.as_deref()),
            created_time: format_status_time(record.created_time),
            last_updated_time: format_status_time(record.last_updated_time),
            history_events: None,
        }
    }

    pub fn with_history(mut self, events: Vec<Value>) -> Self {
        self.history_events = Some(events);
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::RuntimeStatus;

    pub(crate) fn record(status: RuntimeStatus) -> InstanceRecord {
        InstanceRecord {
            instance_id: "abc".into(),
            name: "E1_HelloSequence".into(),
            version: String::new(),
            execution_id: "e1".into(),
            runtime_status: status,
            input: Some("{\"city\":\"Tokyo\"}".into()),
            output: None,
            custom_status: None,
            created_time: "2018-02-28T05:18:49.345Z".parse().unwrap(),
            last_updated_time: "2018-02-28T05:18:54.9Z".parse().unwrap(),
            completed_time: None,
            parent_instance_id: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn keys_in_order_nulls_present_history_omitted() {
        let s = StatusResponse::from_record(&record(RuntimeStatus::Running), true);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"name":"E1_HelloSequence","instanceId":"abc","runtimeStatus":"Running","input":{"city":"Tokyo"},"customStatus":null,"output":null,"createdTime":"2018-02-28T05:18:49Z","lastUpdatedTime":"2018-02-28T05:18:54Z"}"#
        );
    }

    #[test]
    fn show_input_false_and_history_last() {
        let mut r = record(RuntimeStatus::Failed);
        r.output = Some("Orchestrator function 'X' failed: boom".into());
        let s = StatusResponse::from_record(&r, false).with_history(vec![]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["input"], Value::Null);
        assert_eq!(v["output"], "Orchestrator function 'X' failed: boom");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.last().unwrap(), "historyEvents");
    }
}
