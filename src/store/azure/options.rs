//! Per-process settings of the Azure Storage backend, read from `TASKHUB_AZURE_*` variables
//! (connection strings are shared with the apps, so nothing taskhub-specific goes in them).

use std::time::Duration;

use super::messages::Encoding;

#[derive(Clone, Debug)]
pub struct AzureOptions {
    /// Partition count for a hub that has none recorded yet (existing hubs keep theirs: rows in
    /// `{Hub}Partitions`, else `taskhub.json`). DTFx's default is 4; 1..=16.
    pub partition_count: u32,
    /// How new queue messages are written (both are always read).
    pub encoding: Encoding,
    /// This process's name in partition leases.
    pub worker_id: String,
    /// How long a partition lease lasts without renewal (DTFx: 30 s).
    pub lease_duration: Duration,
    /// How long dequeued control-queue messages stay hidden while this process holds them.
    pub message_visibility: Duration,
}

impl Default for AzureOptions {
    fn default() -> Self {
        Self {
            partition_count: 4,
            encoding: Encoding::Utf8,
            worker_id: format!(
                "{}-{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "taskhub".into()),
                std::process::id(),
                &crate::model::new_guid_n()[..8]
            ),
            lease_duration: Duration::from_secs(30),
            message_visibility: Duration::from_secs(60),
        }
    }
}

impl AzureOptions {
    /// Defaults overridden by `TASKHUB_AZURE_PARTITION_COUNT`, `TASKHUB_AZURE_MESSAGE_ENCODING`
    /// (`utf8` | `base64`), `TASKHUB_AZURE_WORKER_ID`, `TASKHUB_AZURE_LEASE_SECONDS`,
    /// `TASKHUB_AZURE_MESSAGE_VISIBILITY_SECONDS`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut o = Self::default();
        if let Some(v) = get("TASKHUB_AZURE_PARTITION_COUNT") {
            let n: u32 = v
                .parse()
                .map_err(|_| format!("TASKHUB_AZURE_PARTITION_COUNT '{v}' is not a number"))?;
            if !(1..=16).contains(&n) {
                return Err(format!(
                    "TASKHUB_AZURE_PARTITION_COUNT must be 1..16, not {n}"
                ));
            }
            o.partition_count = n;
        }
        if let Some(v) = get("TASKHUB_AZURE_MESSAGE_ENCODING") {
            o.encoding = Encoding::parse(&v).ok_or_else(|| {
                format!("TASKHUB_AZURE_MESSAGE_ENCODING must be 'utf8' or 'base64', not '{v}'")
            })?;
        }
        if let Some(v) = get("TASKHUB_AZURE_WORKER_ID").filter(|v| !v.is_empty()) {
            o.worker_id = v;
        }
        let secs = |name: &str, v: String| -> Result<Duration, String> {
            v.parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{name} must be a positive number of seconds, not '{v}'"))
        };
        if let Some(v) = get("TASKHUB_AZURE_LEASE_SECONDS") {
            o.lease_duration = secs("TASKHUB_AZURE_LEASE_SECONDS", v)?;
        }
        if let Some(v) = get("TASKHUB_AZURE_MESSAGE_VISIBILITY_SECONDS") {
            o.message_visibility = secs("TASKHUB_AZURE_MESSAGE_VISIBILITY_SECONDS", v)?;
        }
        Ok(o)
    }
}
