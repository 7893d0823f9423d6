//! The hub lease: only the process holding it dispatches a hub's work, so that no instance is
//! ever worked on by two processes. Processes that only manage instances (the CLI) never take
//! it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::codec::now_micros;
use super::writes::{self, LeaseOutcome};
use super::{micros, SqliteStore};
use crate::store::StoreResult;

/// How long a hub lease lasts without renewal: a crashed holder's hubs wait this long.
const LEASE_FOR: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// A lock call renews the lease itself when less than this is left (the renewal task may have
/// died with the runtime that spawned it).
const RENEW_MARGIN: Duration = Duration::from_secs(15);
/// How often a process that found the lease taken tries again.
const ACQUIRE_RETRY: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct LeaseGate {
    /// Set after finding the lease held by another process.
    retry_at: Option<Instant>,
    renewer: Option<JoinHandle<()>>,
}

impl SqliteStore {
    /// Takes or renews the hub lease. When it was not ours without interruption, the hub's
    /// pending work is (re)loaded in the same transaction, so nothing slips between the two.
    async fn acquire_lease(&self) -> StoreResult<bool> {
        let now = now_micros();
        let until = now + micros(LEASE_FOR);
        let (hub, owner) = (self.hub.clone(), self.shared.owner.clone());
        let dispatch = self.dispatch.clone();
        let registry = self.shared.registry.clone();
        let (hub2, dispatch2) = (hub.clone(), dispatch.clone());
        let acquired = self
            .shared
            .writer
            .call(
                move |conn| {
                    let outcome = writes::acquire_lease(conn, &hub, &owner, now, until)?;
                    let reload = match outcome {
                        LeaseOutcome::HeldByOther => None,
                        LeaseOutcome::Kept if dispatch.is_active() => None,
                        LeaseOutcome::Kept | LeaseOutcome::Taken => {
                            Some(writes::load_pending(conn, &hub)?)
                        }
                    };
                    Ok((outcome, reload))
                },
                move |result| {
                    let (outcome, reload) = result?;
                    if let LeaseOutcome::HeldByOther = outcome {
                        if dispatch2.is_active() {
                            dispatch2.deactivate();
                            registry.lock().unwrap().remove(&hub2);
                        }
                        return Ok(false);
                    }
                    if let Some((messages, activities)) = reload {
                        dispatch2.activate(messages, activities, now_micros());
                        registry.lock().unwrap().insert(hub2, dispatch2);
                    }
                    Ok(true)
                },
            )
            .await?;
        if acquired {
            self.lease_until.store(until, Ordering::Relaxed);
        }
        Ok(acquired)
    }

    fn lease_fresh(&self) -> bool {
        self.dispatch.is_active()
            && self.lease_until.load(Ordering::Relaxed) > now_micros() + micros(RENEW_MARGIN)
    }

    /// Whether this process dispatches the hub, starting dispatch on first use.
    async fn ensure_dispatch(&self) -> StoreResult<bool> {
        if self.lease_fresh() {
            return Ok(true);
        }
        let mut gate = self.lease.lock().await;
        if self.lease_fresh() {
            return Ok(true);
        }
        if gate.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        if !self.acquire_lease().await? {
            gate.retry_at = Some(Instant::now() + ACQUIRE_RETRY);
            return Ok(false);
        }
        gate.retry_at = None;
        if gate.renewer.as_ref().is_none_or(|h| h.is_finished()) {
            gate.renewer = Some(self.spawn_renewer());
        }
        Ok(true)
    }

    fn spawn_renewer(&self) -> JoinHandle<()> {
        let me = self.me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let Some(store) = me.upgrade() else {
                    return;
                };
                match store.acquire_lease().await {
                    Ok(true) => {}
                    // Lost to another process; the next lock call tries to take it back.
                    Ok(false) => return,
                    Err(e) => tracing::warn!(hub = %store.hub, "could not renew hub lease: {e}"),
                }
            }
        })
    }

    /// Waits for work while another process holds the lease, trying to take it over now and
    /// then. Returns `true` once this process dispatches, `false` at the deadline.
    pub(super) async fn wait_for_dispatch(&self, deadline: Instant) -> StoreResult<bool> {
        loop {
            if self.ensure_dispatch().await? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep_until(deadline.min(now + ACQUIRE_RETRY)).await;
        }
    }
}

/// A lease owner id: `{scope}:{pid}:{random}`, where the scope names the pid namespace the pid
/// is valid in: host name, boot id and pid namespace. A successor in the same scope can see that
/// the holder was killed and take over at once instead of waiting for expiry. The host name alone
/// is not enough: containers share it across pid namespaces (and a reused name across boots),
/// where a pid that is absent here may be a live process there; a second server once took the
/// lease from a live one that way and ran an activity twice at once.
pub(super) fn owner_id() -> String {
    format!(
        "{}:{}:{}",
        pid_scope(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// True only when the holder ran in this pid scope and its process no longer exists. An owner
/// from elsewhere (or from an older version, which wrote the bare host name) waits for expiry.
pub(super) fn holder_is_dead(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(scope), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    let proc_root = std::path::Path::new("/proc");
    let here = pid_scope();
    !here.is_empty()
        && scope == here
        && pid != std::process::id()
        && proc_root.join("self").exists()
        && !proc_root.join(pid.to_string()).exists()
}

/// `{host}/{boot id}/{pid namespace inode}`, or empty when any part cannot be read (then no
/// holder is ever taken for dead).
fn pid_scope() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let host = read("/proc/sys/kernel/hostname");
    let boot = read("/proc/sys/kernel/random/boot_id");
    // `pid:[4026531836]`
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|l| {
            l.to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .unwrap_or_default();
    if host.is_empty() || boot.is_empty() || ns.is_empty() {
        return String::new();
    }
    format!("{host}/{boot}/{ns}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_vanished_process_in_this_pid_namespace_counts_as_dead() {
        let me = owner_id();
        assert!(!holder_is_dead(&me), "this process is alive");
        let scope = pid_scope();
        assert!(
            !scope.is_empty(),
            "/proc gives host, boot id and pid namespace here"
        );
        // Pids are bounded by pid_max (at most 2^22), so this one cannot exist.
        assert!(holder_is_dead(&format!("{scope}:4294967290:x")));
        let (host, rest) = scope.split_once('/').unwrap();
        let (boot, _ns) = rest.split_once('/').unwrap();
        // Same host and boot, another pid namespace (another container): maybe alive there.
        assert!(!holder_is_dead(&format!("{host}/{boot}/1:4294967290:x")));
        // The bare host name older versions wrote says nothing about the namespace.
        assert!(!holder_is_dead(&format!("{host}:4294967290:x")));
        assert!(!holder_is_dead("other-host:4294967290:x"));
        assert!(!holder_is_dead("legacy-owner-without-pid"));
    }
}
