//! Rewind as DurableTask.AzureStorage does it (spec §4.4, `RewindHistoryAsync`): failure rows are
//! edited in place into `GenericEvent`s, failed sub-orchestrations are rewound recursively, the
//! Instances row goes back to Pending, and each leaf instance gets a `GenericEvent` message that
//! makes its worker replay the edited history. Not `ExecutionRewound`: a DTFx worker on this
//! provider would discard that message.
//!
//! Tables have no transaction across rows, so "only a Failed instance, checked and changed in
//! one step" is kept with the row's ETag: the Pending write is conditional on the row being the
//! one the status check read.

use chrono::Utc;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::entities::{
    get_i32, get_str, record_from_row, set_str, set_time, strip_metadata, Entity,
};
use super::hub::Hub;
use super::keys::{escape_partition_key, odata_str, SENTINEL_ROW_KEY};
use super::tables::row_etag;
use crate::model::{EventKind, HistoryEvent, RuntimeStatus};
use crate::store::{OrchestrationMessage, StoreError, StoreResult};

/// [`Store::rewind`](crate::store::Store::rewind) on this layout.
pub async fn rewind(hub: &Hub, instance_id: &str, reason: Option<String>) -> StoreResult<()> {
    let row = hub.read_row(instance_id).await?;
    refuse_unless_failed(instance_id, row.as_ref())?;
    let if_match = row.as_ref().and_then(row_etag);
    let mut leaves = Vec::new();
    if let Err(e) = rewind_instance(hub, instance_id.to_string(), if_match, &mut leaves).await {
        // A purge, restart or other rewind that raced this one explains the failure (a 404 or
        // 412 on some row) better than the storage error does.
        refuse_unless_failed(instance_id, hub.read_row(instance_id).await?.as_ref())?;
        return Err(e);
    }
    for leaf in leaves {
        let m = OrchestrationMessage {
            instance_id: leaf,
            execution_id: None,
            event: HistoryEvent::unscheduled(EventKind::GenericEvent {
                data: reason.clone(),
            }),
            visible_at: None,
        };
        hub.enqueue(&m, None, false).await?;
    }
    Ok(())
}

fn refuse_unless_failed(instance_id: &str, row: Option<&Entity>) -> StoreResult<()> {
    let row = row.ok_or_else(|| StoreError::NotFound(instance_id.to_string()))?;
    match record_from_row(row).runtime_status {
        RuntimeStatus::Failed => Ok(()),
        status => Err(StoreError::NotFailed {
            instance_id: instance_id.to_string(),
            status,
        }),
    }
}

/// `if_match`: the ETag the root's Pending write is conditional on (`None` for the children,
/// which are rewound because their parent is).
fn rewind_instance<'a>(
    hub: &'a Hub,
    instance_id: String,
    if_match: Option<String>,
    leaves: &'a mut Vec<String>,
) -> BoxFuture<'a, StoreResult<()>> {
    async move {
        let pk = escape_partition_key(&instance_id);
        let pk_q = format!("PartitionKey eq {}", odata_str(&pk));
        // 1. The current execution: the one of the last OrchestratorStarted row.
        let started = hub
            .history
            .query(
                Some(format!("{pk_q} and EventType eq 'OrchestratorStarted'")),
                None,
            )
            .await?;
        let execution_id = started
            .iter()
            .max_by_key(|r| get_str(r, "RowKey"))
            .and_then(|r| get_str(r, "ExecutionId"))
            .ok_or_else(|| StoreError::NotFound(instance_id.clone()))?;
        let exec_q = format!("ExecutionId eq {}", odata_str(&execution_id));
        // 2. Its failure rows.
        let failed = hub
            .history
            .query(
                Some(format!(
                    "{pk_q} and {exec_q} and (OrchestrationStatus eq 'Failed' or EventType eq 'TaskFailed' or EventType eq 'SubOrchestrationInstanceFailed')"
                )),
                None,
            )
            .await?;
        let mut has_failed_children = false;
        for row in failed {
            if get_str(&row, "RowKey").as_deref() == Some(SENTINEL_ROW_KEY) {
                continue;
            }
            let event_type = get_str(&row, "EventType").unwrap_or_default();
            let scheduled_id = get_i32(&row, "TaskScheduledId").unwrap_or(-1);
            match event_type.as_str() {
                "TaskFailed" => {
                    for s in find(hub, &pk_q, &exec_q, "TaskScheduled", scheduled_id).await? {
                        replace(hub, s, "Rewound: TaskScheduled", true).await?;
                    }
                }
                "SubOrchestrationInstanceFailed" => {
                    has_failed_children = true;
                    let created =
                        find(hub, &pk_q, &exec_q, "SubOrchestrationInstanceCreated", scheduled_id)
                            .await?;
                    for c in created {
                        let child = get_str(&c, "InstanceId");
                        replace(hub, c, "Rewound: SubOrchestrationInstanceCreated", false).await?;
                        if let Some(child) = child {
                            rewind_instance(hub, child, None, leaves).await?;
                        }
                    }
                }
                _ => {}
            }
            replace(hub, row, &format!("Rewound: {event_type}"), true).await?;
        }
        // 3. Back to Pending; CompletedTime and Output stay as they were (DTFx merges).
        let mut status = Entity::new();
        set_str(&mut status, "PartitionKey", &pk);
        set_str(&mut status, "RowKey", "");
        set_str(&mut status, "RuntimeStatus", RuntimeStatus::Pending.as_str());
        set_time(&mut status, "LastUpdatedTime", Utc::now());
        hub.instances
            .update(&status, if_match.as_deref(), true)
            .await?;
        // 4. Only instances without failed children are woken; parents wait for their children.
        if !has_failed_children {
            leaves.push(instance_id);
        }
        Ok(())
    }
    .boxed()
}

async fn find(
    hub: &Hub,
    pk_q: &str,
    exec_q: &str,
    event_type: &str,
    event_id: i32,
) -> StoreResult<Vec<Entity>> {
    Ok(hub
        .history
        .query(
            Some(format!(
                "{pk_q} and {exec_q} and EventType eq '{event_type}' and EventId eq {event_id}"
            )),
            None,
        )
        .await?)
}

/// Sets `Reason` (and `EventType = GenericEvent` when asked) and replaces the row with its ETag.
async fn replace(hub: &Hub, mut row: Entity, reason: &str, to_generic: bool) -> StoreResult<()> {
    let etag = row_etag(&row);
    strip_metadata(&mut row);
    set_str(&mut row, "Reason", reason);
    if to_generic {
        set_str(&mut row, "EventType", "GenericEvent");
    }
    hub.history.update(&row, etag.as_deref(), false).await?;
    Ok(())
}
