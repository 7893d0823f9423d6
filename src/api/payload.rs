//! Response payloads built from [`ManagementUrls`]: the 202 check-status body (two dialects),
//! the full webhook payload, and the purge result.

use serde::Serialize;

use super::urls::ManagementUrls;

/// 2.x check-status body: no `rewindPostUri` (removed in 2.0), restart/suspend/resume added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatusV2 {
    pub id: String,
    pub status_query_get_uri: String,
    pub send_event_post_uri: String,
    pub terminate_post_uri: String,
    pub purge_history_delete_uri: String,
    pub restart_post_uri: String,
    pub suspend_post_uri: String,
    pub resume_post_uri: String,
}

/// 1.x check-status body: the first six keys, `rewindPostUri` included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatusV1 {
    pub id: String,
    pub status_query_get_uri: String,
    pub send_event_post_uri: String,
    pub terminate_post_uri: String,
    pub rewind_post_uri: String,
    pub purge_history_delete_uri: String,
}

/// `HttpManagementPayload`: all nine keys, in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpManagementPayload {
    pub id: String,
    pub status_query_get_uri: String,
    pub send_event_post_uri: String,
    pub terminate_post_uri: String,
    pub rewind_post_uri: String,
    pub purge_history_delete_uri: String,
    pub restart_post_uri: String,
    pub suspend_post_uri: String,
    pub resume_post_uri: String,
}

impl From<ManagementUrls> for CheckStatusV2 {
    fn from(u: ManagementUrls) -> Self {
        Self {
            id: u.id,
            status_query_get_uri: u.status_query_get_uri,
            send_event_post_uri: u.send_event_post_uri,
            terminate_post_uri: u.terminate_post_uri,
            purge_history_delete_uri: u.purge_history_delete_uri,
            restart_post_uri: u.restart_post_uri,
            suspend_post_uri: u.suspend_post_uri,
            resume_post_uri: u.resume_post_uri,
        }
    }
}

impl From<ManagementUrls> for CheckStatusV1 {
    fn from(u: ManagementUrls) -> Self {
        Self {
            id: u.id,
            status_query_get_uri: u.status_query_get_uri,
            send_event_post_uri: u.send_event_post_uri,
            terminate_post_uri: u.terminate_post_uri,
            rewind_post_uri: u.rewind_post_uri,
            purge_history_delete_uri: u.purge_history_delete_uri,
        }
    }
}

impl From<ManagementUrls> for HttpManagementPayload {
    fn from(u: ManagementUrls) -> Self {
        Self {
            id: u.id,
            status_query_get_uri: u.status_query_get_uri,
            send_event_post_uri: u.send_event_post_uri,
            terminate_post_uri: u.terminate_post_uri,
            rewind_post_uri: u.rewind_post_uri,
            purge_history_delete_uri: u.purge_history_delete_uri,
            restart_post_uri: u.restart_post_uri,
            suspend_post_uri: u.suspend_post_uri,
            resume_post_uri: u.resume_post_uri,
        }
    }
}

/// `PurgeHistoryResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeHistoryResult {
    pub instances_deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn keys<T: Serialize>(v: &T) -> Vec<String> {
        match serde_json::to_value(v).unwrap() {
            Value::Object(m) => m.keys().cloned().collect(),
            _ => unreachable!(),
        }
    }

    fn urls() -> ManagementUrls {
        ManagementUrls::new("http://h/p", "taskHub=H&connection=Storage", "i")
    }

    #[test]
    fn key_orders_per_dialect() {
        assert_eq!(
            keys(&CheckStatusV2::from(urls())),
            [
                "id",
                "statusQueryGetUri",
                "sendEventPostUri",
                "terminatePostUri",
                "purgeHistoryDeleteUri",
                "restartPostUri",
                "suspendPostUri",
                "resumePostUri"
            ]
        );
        assert_eq!(
            keys(&CheckStatusV1::from(urls())),
            [
                "id",
                "statusQueryGetUri",
                "sendEventPostUri",
                "terminatePostUri",
                "rewindPostUri",
                "purgeHistoryDeleteUri"
            ]
        );
        assert_eq!(
            keys(&HttpManagementPayload::from(urls())),
            [
                "id",
                "statusQueryGetUri",
                "sendEventPostUri",
                "terminatePostUri",
                "rewindPostUri",
                "purgeHistoryDeleteUri",
                "restartPostUri",
                "suspendPostUri",
                "resumePostUri"
            ]
        );
    }

    #[test]
    fn purge_result_shape() {
        assert_eq!(
            serde_json::to_string(&PurgeHistoryResult {
                instances_deleted: 3
            })
            .unwrap(),
            r#"{"instancesDeleted":3}"#
        );
    }
}
