//! Picking up work that other connections (another process, or another handle on the same
//! file: typically the CLI starting an instance) wrote while this process dispatches.
//!
//! Runs on the writer thread, so a scan is ordered with this process's own commits: every row
//! with an id above the watermark is either one this process already registered (ignored by
//! id) or one it has never seen, and every row this process holds in memory but no longer
//! finds was deleted by someone else (a purge, or a replacing start).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::codec::{backend, now_micros};
use super::dispatch::{ForeignRows, HubDispatch};
use super::writer::Hooks;
use super::writes::{id_watermarks, pending_ids, release_leases, rows_after};
use crate::store::StoreResult;

/// The hubs this process currently dispatches.
pub(super) type Registry = Mutex<HashMap<String, Arc<HubDispatch>>>;

pub(super) struct ForeignScan {
    registry: Arc<Registry>,
    owner: String,
    last_message: i64,
    last_activity: i64,
}

impl ForeignScan {
    pub fn new(conn: &Connection, registry: Arc<Registry>, owner: String) -> StoreResult<Self> {
        let (last_message, last_activity) = id_watermarks(conn)?;
        Ok(Self {
            registry,
            owner,
            last_message,
            last_activity,
        })
    }

    fn scan(&mut self, conn: &Connection) -> StoreResult<()> {
        let hubs: Vec<(String, Arc<HubDispatch>)> = self
            .registry
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if hubs.is_empty() {
            // Nobody to tell; a hub that starts dispatching later loads everything anyway.
            (self.last_message, self.last_activity) = id_watermarks(conn)?;
            return Ok(());
        }
        // One snapshot, so that what is new and what is gone agree.
        let tx = conn.unchecked_transaction().map_err(backend)?;
        let (messages, activities) = rows_after(&tx, self.last_message, self.last_activity)?;
        let mut by_hub: HashMap<String, ForeignRows> = HashMap::new();
        for (hub, _) in &hubs {
            let (messages, activities) = pending_ids(&tx, hub)?;
            by_hub.insert(
                hub.clone(),
                ForeignRows {
                    present_messages: messages,
                    present_activities: activities,
                    ..ForeignRows::default()
                },
            );
        }
        tx.finish().map_err(backend)?;

        self.last_message = messages.last().map_or(self.last_message, |m| m.0);
        self.last_activity = activities.last().map_or(self.last_activity, |a| a.0);
        for (id, hub, m) in messages {
            if let Some(rows) = by_hub.get_mut(&hub) {
                rows.messages.push((id, m));
            }
        }
        for (id, hub, a) in activities {
            if let Some(rows) = by_hub.get_mut(&hub) {
                rows.activities.push((id, a));
            }
        }
        let now = now_micros();
        for (hub, dispatch) in hubs {
            if let Some(rows) = by_hub.remove(&hub) {
                dispatch.foreign_rows(rows, now);
            }
        }
        Ok(())
    }
}

impl Hooks for ForeignScan {
    fn foreign_change(&mut self, conn: &Connection) {
        if let Err(e) = self.scan(conn) {
            tracing::warn!("could not scan for work written by other processes: {e}");
        }
    }

    fn shutdown(&mut self, conn: &Connection) {
        if let Err(e) = release_leases(conn, &self.owner) {
            tracing::warn!("could not release hub leases on shutdown: {e}");
        }
    }
}
