//! Large payloads (spec §3.3, §4.3): gzip blobs in `{hub}-largemessages`, referenced by name from
//! queue messages and History rows, and by absolute URL from Instances rows.

use std::io::{Read, Write};
use std::time::Duration;

use azure_storage_blobs::prelude::*;
use futures::StreamExt;

use super::error::AzError;

/// Queue messages whose UTF-8 JSON is larger than this go to a blob (45 KiB).
pub const MAX_MESSAGE_BYTES: usize = 45 * 1024;

#[derive(Clone)]
pub struct Blobs {
    container: ContainerClient,
}

impl Blobs {
    pub fn new(service: &BlobServiceClient, container: &str) -> Self {
        Self {
            container: service.container_client(container),
        }
    }

    pub async fn create(&self) -> Result<(), AzError> {
        match self.container.create().await {
            Ok(_) => Ok(()),
            Err(e) => AzError::from(e).ok_if(409),
        }
    }

    pub async fn delete_container(&self) -> Result<(), AzError> {
        match self.container.delete().await {
            Ok(_) => Ok(()),
            Err(e) => AzError::from(e).ok_if(404),
        }
    }

    pub async fn upload_gz(&self, name: &str, text: &str) -> Result<(), AzError> {
        self.container
            .blob_client(name)
            .put_block_blob(gzip(text))
            .content_type("application/octet-stream")
            .await?;
        Ok(())
    }

    pub async fn download_gz(&self, name: &str) -> Result<String, AzError> {
        let bytes = self.container.blob_client(name).get_content().await?;
        gunzip(&bytes).map_err(|e| AzError::other(format!("blob '{name}' is not gzip text: {e}")))
    }

    /// Blob text, or `None` if the blob does not exist (same as a download that 404s).
    pub async fn read_blob_text(&self, name: &str) -> Result<Option<String>, AzError> {
        match self.download_gz(name).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.is(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes every blob whose name starts with `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, AzError> {
        let mut names = Vec::new();
        let mut stream = self
            .container
            .list_blobs()
            .prefix(prefix.to_string())
            .into_stream();
        while let Some(page) = stream.next().await {
            match page {
                Ok(p) => names.extend(p.blobs.blobs().map(|b| b.name.clone())),
                Err(e) => return AzError::from(e).ok_if(404).map(|_| 0),
            }
        }
        for n in &names {
            if let Err(e) = self.container.blob_client(n).delete().await {
                AzError::from(e).ok_if(404)?;
            }
        }
        Ok(names.len() as u64)
    }

    /// The absolute URL DTFx stores in Instances rows: container URL + escaped path segments.
    pub fn url_of(&self, name: &str) -> String {
        match self.container.blob_client(name).url() {
            Ok(u) => u.to_string(),
            Err(_) => name.to_string(),
        }
    }

    /// The blob name inside this container that an absolute URL refers to, if it does.
    pub fn name_from_url(&self, value: &str) -> Option<String> {
        let url = azure_core::Url::parse(value).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let container = self.container.container_name();
        let mut segs = url.path_segments()?;
        segs.by_ref().find(|s| *s == container)?;
        let rest: Vec<String> = segs
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        (!rest.is_empty()).then(|| rest.join("/"))
    }
}

impl Blobs {
    /// What holds a lease here, if anything: the container itself or one of its blobs. A
    /// missing container holds none.
    pub async fn active_lease(&self) -> Result<Option<String>, AzError> {
        use azure_core::LeaseState;
        let name = self.container.container_name();
        match self.container.get_properties().await {
            Ok(p) if p.container.lease_state == LeaseState::Leased => {
                return Ok(Some(format!("container '{name}'")))
            }
            Ok(_) => {}
            Err(e) => return AzError::from(e).ok_if(404).map(|_| None),
        }
        let mut stream = self.container.list_blobs().into_stream();
        while let Some(page) = stream.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => return AzError::from(e).ok_if(404).map(|_| None),
            };
            let leased = page
                .blobs
                .blobs()
                .find(|b| b.properties.lease_state == Some(LeaseState::Leased))
                .map(|b| format!("blob '{name}/{}'", b.name));
            if leased.is_some() {
                return Ok(leased);
            }
        }
        Ok(None)
    }

    /// Leases the container for `seconds` (15..=60) as a DTFx app's app lease does (tests play
    /// such an app with it); returns the lease id.
    pub async fn lease_container(&self, seconds: u64) -> Result<String, AzError> {
        let r = self
            .container
            .acquire_lease(Duration::from_secs(seconds))
            .await?;
        Ok(r.lease_id.to_string())
    }

    /// Ends any lease on the container at once.
    pub async fn break_container_lease(&self) -> Result<(), AzError> {
        self.container
            .break_lease()
            .lease_break_period(Duration::ZERO)
            .await?;
        Ok(())
    }

    pub async fn raw(&self, name: &str) -> Result<Vec<u8>, AzError> {
        Ok(self.container.blob_client(name).get_content().await?)
    }

    pub async fn put_raw(&self, name: &str, bytes: Vec<u8>) -> Result<(), AzError> {
        self.container
            .blob_client(name)
            .put_block_blob(bytes)
            .await?;
        Ok(())
    }
}

pub fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).expect("writing to memory");
    e.finish().expect("writing to memory")
}

pub fn gunzip(bytes: &[u8]) -> std::io::Result<String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut s)?;
    Ok(s)
}

/// `message-{ActivityId:N}-{EventType}.json.gz` under the raw instance id (spec §4.3).
pub fn message_blob_name(instance_id: &str, activity_id: &uuid::Uuid, event_type: &str) -> String {
    format!(
        "{instance_id}/message-{}-{event_type}.json.gz",
        activity_id.simple()
    )
}

/// `{PartitionKey}/history-{RowKey}-{EventType}-{rand:X8}-{Column}.json.gz` (spec §3.3).
pub fn history_blob_name(pk: &str, row_key: &str, event_type: &str, column: &str) -> String {
    let r: u32 = rand::random();
    format!("{pk}/history-{row_key}-{event_type}-{r:08X}-{column}.json.gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips_and_names_follow_the_spec() {
        let text = "x".repeat(100_000);
        assert_eq!(gunzip(&gzip(&text)).unwrap(), text);
        let id = uuid::Uuid::parse_str("5c1f0e3a-9a6b-4f6e-8d7e-2d1b0c9a8f11").unwrap();
        assert_eq!(
            message_blob_name("order 1", &id, "ExecutionStarted"),
            "order 1/message-5c1f0e3a9a6b4f6e8d7e2d1b0c9a8f11-ExecutionStarted.json.gz"
        );
        let h = history_blob_name("pk", "000000000000000A", "TaskCompleted", "Result");
        assert!(h.starts_with("pk/history-000000000000000A-TaskCompleted-"));
        assert!(h.ends_with("-Result.json.gz"));
    }
}
