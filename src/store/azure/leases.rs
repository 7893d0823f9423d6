//! Table partition manager (spec §5, DTFx `TablePartitionManager`): one row per control queue in
//! `{Hub}Partitions`; a worker owns a partition while its lease (`ExpiresAt`) is renewed. Free or
//! expired partitions are claimed with the row's ETag, so two workers never both win one. A
//! worker holding fewer than its share marks one of a busier worker's partitions with
//! `NextOwner`; the owner then lets it go. Only processes that run executors create these rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::entities::{get_str, get_time, set_str, set_time, strip_metadata, Entity};
use super::hub::Hub;
use super::keys::control_queue_name;
use super::tables::{row_etag, BatchOp};

/// What the manager tells its owner: partition `n` was acquired (start reading it) or lost.
pub trait PartitionListener: Send + Sync + 'static {
    fn acquired(&self, partition: u32);
    fn released(&self, partition: u32);
}

pub struct PartitionManager {
    hub: Arc<Hub>,
    listener: Arc<dyn PartitionListener>,
}

struct Owned {
    etag: String,
}

impl PartitionManager {
    pub fn new(hub: Arc<Hub>, listener: Arc<dyn PartitionListener>) -> Self {
        Self { hub, listener }
    }

    /// Runs until `stop` turns true; releases owned partitions on the way out.
    pub async fn run(self, mut stop: watch::Receiver<bool>, ready: watch::Sender<bool>) {
        let mut owned: HashMap<u32, Owned> = HashMap::new();
        let interval = (self.hub.opts.lease_duration / 3).max(Duration::from_millis(500));
        let mut ensured = false;
        let mut held_by_app = None;
        loop {
            match self.app_lease().await {
                Some(lease) => {
                    if held_by_app.as_ref() != Some(&lease) {
                        tracing::error!(hub = %self.hub.name, lease = %lease, "a Durable Task Framework app runs this task hub (it holds a blob lease); this process takes no partitions while it does. Manage such a hub with the executor off");
                    }
                    held_by_app = Some(lease);
                    self.release_all(&mut owned).await;
                }
                None => {
                    if held_by_app.take().is_some() {
                        tracing::info!(hub = %self.hub.name, "the app's blob leases are gone; taking partitions");
                    }
                    self.pass(&mut owned, &mut ensured).await;
                }
            }
            let _ = ready.send(true);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        self.release_all(&mut owned).await;
    }

    async fn release_all(&self, owned: &mut HashMap<u32, Owned>) {
        for (p, o) in owned.drain() {
            self.listener.released(p);
            let _ = self.release(p, &o.etag).await;
        }
    }

    async fn pass(&self, owned: &mut HashMap<u32, Owned>, ensured: &mut bool) {
        if !*ensured {
            *ensured = self.ensure_rows().await;
        }
        match self.tick(owned).await {
            Ok(true) => {}
            Ok(false) if *ensured => {
                // No partition rows: the hub was deleted under us. Stop reading its queues,
                // and make the rows again once a client has created the hub again.
                tracing::info!(hub = %self.hub.name, "task hub deleted; partitions released");
                for (p, _) in owned.drain() {
                    self.listener.released(p);
                }
                *ensured = false;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(hub = %self.hub.name, error = %e, "partition lease pass failed")
            }
        }
    }

    /// A blob lease of a Durable Task Framework app on this hub (spec §5: its app lease on
    /// `{h}-applease`, or its blob partition leases in `{h}-leases`), which taskhub never takes.
    /// Such an app does not read `{Hub}Partitions`, so sharing partitions with it is impossible;
    /// and this process would fail the app's instances as "not registered". Errors count as no
    /// lease: a failed check must not stop the hub.
    async fn app_lease(&self) -> Option<String> {
        for container in [&self.hub.applease_container, &self.hub.leases_container] {
            if let Ok(Some(lease)) = container.active_lease().await {
                return Some(lease);
            }
        }
        None
    }

    /// Creates the partition rows (and control queues) of an existing hub; false when the hub
    /// does not exist (deleted: only clients create hubs) or a call failed.
    async fn ensure_rows(&self) -> bool {
        if !matches!(self.hub.instances.exists().await, Ok(true)) {
            return false;
        }
        let Ok(count) = self.hub.partition_count().await else {
            return false;
        };
        if self.hub.partitions.create().await.is_err() {
            return false;
        }
        let rows: Vec<Entity> = (0..count)
            .map(|p| {
                let mut row = Entity::new();
                set_str(&mut row, "PartitionKey", "");
                set_str(&mut row, "RowKey", control_queue_name(&self.hub.name, p));
                row.insert("IsDraining".into(), false.into());
                row
            })
            .collect();
        // All rows in one transaction, so nobody counts a half-created set (the row count is
        // how other processes learn the partition count).
        let batch = rows.iter().cloned().map(BatchOp::Insert).collect();
        if let Err(e) = self.hub.partitions.batch("", batch).await {
            if !e.is(409) {
                return false;
            }
        }
        for p in 0..count {
            let _ = self.hub.control_queue(p).create().await;
        }
        true
    }

    fn lease_row(
        &self,
        p: u32,
        owner: Option<&str>,
        next: Option<&str>,
        since: DateTime<Utc>,
    ) -> Entity {
        let now = Utc::now();
        let mut row = Entity::new();
        set_str(&mut row, "PartitionKey", "");
        set_str(&mut row, "RowKey", control_queue_name(&self.hub.name, p));
        if let Some(o) = owner {
            set_str(&mut row, "CurrentOwner", o);
            set_time(&mut row, "OwnedSince", since);
            set_time(&mut row, "LastRenewal", now);
            let lease =
                chrono::Duration::from_std(self.hub.opts.lease_duration).unwrap_or_default();
            set_time(&mut row, "ExpiresAt", now + lease);
        }
        if let Some(n) = next {
            set_str(&mut row, "NextOwner", n);
            if owner.is_none() {
                // The invitation lapses like a lease if the invited worker never comes.
                let lease =
                    chrono::Duration::from_std(self.hub.opts.lease_duration).unwrap_or_default();
                set_time(&mut row, "ExpiresAt", now + lease);
            }
        }
        row.insert("IsDraining".into(), false.into());
        row
    }

    /// One pass over the lease rows; `Ok(false)` when there are none.
    async fn tick(&self, owned: &mut HashMap<u32, Owned>) -> Result<bool, super::error::AzError> {
        let me = self.hub.opts.worker_id.as_str();
        let count = self
            .hub
            .partition_count()
            .await
            .map_err(|e| super::error::AzError::other(e.to_string()))?;
        let rows = self
            .hub
            .partitions
            .query(Some("PartitionKey eq ''".into()), None)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let now = Utc::now();
        let by_name: HashMap<String, &Entity> = rows
            .iter()
            .filter_map(|r| get_str(r, "RowKey").map(|k| (k, r)))
            .collect();
        // Live owners (including me) decide each worker's fair share.
        let mut load: HashMap<String, u32> = HashMap::new();
        load.insert(me.to_string(), 0);
        for r in &rows {
            if let (Some(o), Some(exp)) = (get_str(r, "CurrentOwner"), get_time(r, "ExpiresAt")) {
                if exp > now {
                    *load.entry(o).or_default() += 1;
                }
            }
        }
        let share = count.div_ceil(load.len() as u32);
        let lease = chrono::Duration::from_std(self.hub.opts.lease_duration).unwrap_or_default();
        for p in 0..count {
            let Some(row) = by_name.get(&control_queue_name(&self.hub.name, p)) else {
                continue;
            };
            let etag = row_etag(row).unwrap_or_default();
            let owner = get_str(row, "CurrentOwner");
            let next = get_str(row, "NextOwner");
            if owner.as_deref() == Some(me) && owned.contains_key(&p) {
                if next.as_deref().is_some_and(|n| n != me) {
                    // Someone asked for it: hand it over.
                    owned.remove(&p);
                    self.listener.released(p);
                    let _ = self.release_to(p, &etag, next.as_deref()).await;
                    continue;
                }
                let since = get_time(row, "OwnedSince").unwrap_or(now);
                match self
                    .hub
                    .partitions
                    .update(
                        &self.lease_row(p, Some(me), None, since),
                        Some(&etag),
                        false,
                    )
                    .await
                {
                    Ok(tag) => {
                        owned.insert(p, Owned { etag: tag });
                    }
                    Err(_) => {
                        owned.remove(&p);
                        self.listener.released(p);
                    }
                }
                continue;
            }
            if owned.remove(&p).is_some() {
                // The row says someone else owns it now.
                self.listener.released(p);
            }
            if owner.as_deref() == Some(me) {
                // A lease this process gave up (a renewal lost a race): let it go properly.
                let _ = self.release_to(p, &etag, next.as_deref()).await;
                continue;
            }
            let mine = owned.len() as u32;
            let expires = get_time(row, "ExpiresAt");
            let expired = expires.is_none_or(|e| e <= now);
            // Free and not promised to another worker, promised to me, or its lease (or the
            // promise) ran out: the owner or the invited worker died.
            let free = owner.is_none();
            let for_me = next.as_deref() == Some(me);
            let claimable = expired || (free && (next.is_none() || for_me));
            if claimable {
                // Leave it to a worker below its share, unless nobody took it for a whole lease.
                let overdue = expires.is_none_or(|e| now - e > lease);
                if mine >= share && !for_me && !overdue {
                    continue;
                }
                if let Ok(tag) = self
                    .hub
                    .partitions
                    .update(&self.lease_row(p, Some(me), None, now), Some(&etag), false)
                    .await
                {
                    owned.insert(p, Owned { etag: tag });
                    self.listener.acquired(p);
                }
                continue;
            }
            // Steal: ask a worker above its share for this partition.
            if let Some(o) = owner.as_deref() {
                if mine < share && next.is_none() && load.get(o).copied().unwrap_or(0) > share {
                    let mut r = (*row).clone();
                    strip_metadata(&mut r);
                    set_str(&mut r, "NextOwner", me);
                    let _ = self.hub.partitions.update(&r, Some(&etag), false).await;
                    // One request per pass, so the share is re-evaluated with fresh rows.
                    if let Some(l) = load.get_mut(o) {
                        *l -= 1;
                    }
                    break;
                }
            }
        }
        Ok(true)
    }

    async fn release(&self, p: u32, etag: &str) -> Result<(), super::error::AzError> {
        self.release_to(p, etag, None).await
    }

    async fn release_to(
        &self,
        p: u32,
        etag: &str,
        next: Option<&str>,
    ) -> Result<(), super::error::AzError> {
        let row = self.lease_row(p, None, next, Utc::now());
        self.hub
            .partitions
            .update(&row, Some(etag), false)
            .await
            .map(|_| ())
    }
}
