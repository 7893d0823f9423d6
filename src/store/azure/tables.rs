//! Thin wrapper over `azure_data_tables` that speaks untyped entities (JSON maps) and fixes the
//! crate's gaps: quotes in keys are doubled here, and a failed entity-group transaction, which
//! the crate returns as `Ok`, is turned into an error by checking every sub-response.

use azure_core::Etag;
use azure_data_tables::prelude::*;
use futures::StreamExt;

use super::entities::{etag, get_str, Entity};
use super::error::AzError;
use super::keys::{key_in_url, odata_str};

#[derive(Clone)]
pub struct Table {
    client: TableClient,
}

/// One operation of an entity-group transaction (all on one PartitionKey).
pub enum BatchOp {
    Insert(Entity),
    /// Insert-or-replace.
    Upsert(Entity),
    /// Replace, with If-Match = the ETag (`None` = `*`).
    Update(Entity, Option<String>),
    /// Merge, with If-Match = the ETag (`None` = `*`).
    Merge(Entity, Option<String>),
    Delete(String, Option<String>),
}

fn if_match(etag: Option<&str>) -> IfMatchCondition {
    match etag {
        Some(e) => IfMatchCondition::Etag(Etag::from(e.to_string())),
        None => IfMatchCondition::Any,
    }
}

fn keys(e: &Entity) -> (String, String) {
    (
        get_str(e, "PartitionKey").unwrap_or_default(),
        get_str(e, "RowKey").unwrap_or_default(),
    )
}

impl Table {
    pub fn new(service: &TableServiceClient, name: &str) -> Self {
        Self {
            client: service.table_client(name),
        }
    }

    pub fn name(&self) -> &str {
        self.client.table_name()
    }

    pub async fn create(&self) -> Result<(), AzError> {
        match self.client.create().await {
            Ok(_) => Ok(()),
            Err(e) => AzError::from(e).ok_if(409),
        }
    }

    pub async fn delete_table(&self) -> Result<(), AzError> {
        match self.client.delete().await {
            Ok(_) => Ok(()),
            Err(e) => AzError::from(e).ok_if(404),
        }
    }

    /// Whether the table exists (a query on a missing one is a 404).
    pub async fn exists(&self) -> Result<bool, AzError> {
        let mut stream = self.client.query().top(1).into_stream::<Entity>();
        match stream.next().await {
            Some(Err(e)) => AzError::from(e).ok_if(404).map(|_| false),
            _ => Ok(true),
        }
    }

    /// Rows matching `filter`, following continuations until `max` rows (or all).
    pub async fn query(
        &self,
        filter: Option<String>,
        max: Option<usize>,
    ) -> Result<Vec<Entity>, AzError> {
        let mut q = self.client.query();
        if let Some(f) = filter {
            q = q.filter(f);
        }
        if let Some(m) = max {
            q = q.top(m.min(1000) as u32);
        }
        let mut stream = q.into_stream::<Entity>();
        let mut out = Vec::new();
        while let Some(page) = stream.next().await {
            let page = match page {
                Ok(p) => p,
                // A table that does not exist has no rows (management of a hub not yet created).
                Err(e) => return AzError::from(e).ok_if(404).map(|_| out),
            };
            out.extend(page.entities);
            if max.is_some_and(|m| out.len() >= m) {
                out.truncate(max.unwrap_or(usize::MAX));
                break;
            }
        }
        Ok(out)
    }

    pub async fn get(&self, pk: &str, rk: &str) -> Result<Option<Entity>, AzError> {
        let filter = format!(
            "PartitionKey eq {} and RowKey eq {}",
            odata_str(pk),
            odata_str(rk)
        );
        Ok(self.query(Some(filter), Some(1)).await?.into_iter().next())
    }

    fn entity_client(&self, pk: &str, rk: &str) -> EntityClient {
        self.client
            .partition_key_client(key_in_url(pk))
            .entity_client(key_in_url(rk))
    }

    /// Inserts; 409 when the row exists. Returns the new ETag.
    pub async fn insert(&self, e: &Entity) -> Result<String, AzError> {
        let r = self
            .client
            .insert::<_, serde_json::Value>(e)?
            .return_entity(false)
            .await?;
        Ok(r.etag.to_string())
    }

    pub async fn upsert(&self, e: &Entity, merge: bool) -> Result<String, AzError> {
        let (pk, rk) = keys(e);
        let c = self.entity_client(&pk, &rk);
        let r = if merge {
            c.insert_or_merge(e)?.await?
        } else {
            c.insert_or_replace(e)?.await?
        };
        Ok(r.etag.to_string())
    }

    /// Replace (or merge) an existing row; 404 when absent, 412 when the ETag does not match.
    pub async fn update(
        &self,
        e: &Entity,
        etag: Option<&str>,
        merge: bool,
    ) -> Result<String, AzError> {
        let (pk, rk) = keys(e);
        let c = self.entity_client(&pk, &rk);
        let r = if merge {
            c.merge(e, if_match(etag))?.await?
        } else {
            c.update(e, if_match(etag))?.await?
        };
        Ok(r.etag.to_string())
    }

    /// Deletes; Ok(false) when the row was not there.
    pub async fn delete(&self, pk: &str, rk: &str, etag: Option<&str>) -> Result<bool, AzError> {
        let mut d = self.entity_client(pk, rk).delete();
        if let Some(e) = etag {
            d = d.if_match(if_match(Some(e)));
        }
        match d.await {
            Ok(_) => Ok(true),
            Err(e) => AzError::from(e).ok_if(404).map(|_| false),
        }
    }

    /// Runs ops (≤ 100, one PartitionKey) atomically. Returns the ETag of each op (if any).
    pub async fn batch(&self, pk: &str, ops: Vec<BatchOp>) -> Result<Vec<Option<String>>, AzError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut t = self
            .client
            .partition_key_client(key_in_url(pk))
            .transaction();
        for op in ops {
            t = match op {
                BatchOp::Insert(e) => t.insert(e)?,
                BatchOp::Upsert(e) => {
                    let rk = keys(&e).1;
                    t.insert_or_replace(key_in_url(&rk), e)?
                }
                BatchOp::Update(e, tag) => {
                    let rk = keys(&e).1;
                    t.update(key_in_url(&rk), e, Some(if_match(tag.as_deref())))?
                }
                BatchOp::Merge(e, tag) => {
                    let rk = keys(&e).1;
                    t.merge(key_in_url(&rk), e, Some(if_match(tag.as_deref())))?
                }
                BatchOp::Delete(rk, tag) => {
                    t.delete(key_in_url(&rk), Some(if_match(tag.as_deref())))?
                }
            };
        }
        let r = t.await?;
        // The crate reports a rejected batch as Ok: the failure is in a sub-response.
        if let Some(bad) = r
            .operation_responses
            .iter()
            .find(|o| !o.status_code.is_success())
        {
            return Err(AzError {
                status: Some(u16::from(bad.status_code)),
                message: format!("entity group transaction failed with {}", bad.status_code),
            });
        }
        Ok(r.operation_responses
            .into_iter()
            .map(|o| o.etag.map(|e| e.to_string()))
            .collect())
    }
}

/// The ETag of a row read by a query.
pub fn row_etag(e: &Entity) -> Option<String> {
    etag(e)
}
