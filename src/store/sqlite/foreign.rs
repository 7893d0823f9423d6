//! Picking up work that other connections (another process, or another handle on the same
//! file: typically the CLI starting an instance) wrote while this process dispatches.
//!
//! Runs on the writer thread, so a scan is ordered with this process's own commits: every row
//! with an id above the watermark is either one this process already registered (ignored by
//! id) or one it has never seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::codec::now_micros;
use super::dispatch::HubDispatch;
use super::writer::Hooks;
use super::writes::{id_watermarks, release_leases, rows_after};
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
        let (messages, activities) = rows_after(conn, self.last_message, self.last_activity)?;
        self.last_message = messages.last().map_or(self.last_message, |m| m.0);
        self.last_activity = activities.last().map_or(self.last_activity, |a| a.0);
        let mut by_hub: HashMap<String, (Vec<_>, Vec<_>)> = HashMap::new();
        for (id, hub, m) in messages {
            by_hub.entry(hub).or_default().0.push((id, m));
        }
        for (id, hub, a) in activities {
            by_hub.entry(hub).or_default().1.push((id, a));
        }
        let now = now_micros();
        for (hub, dispatch) in hubs {
            let (messages, activities) = by_hub.remove(&hub).unwrap_or_default();
            dispatch.foreign_rows(messages, activities, now);
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
