//! Connection strings → an account name, its key and the three service endpoints.
//!
//! The crates can parse connection strings but not `UseDevelopmentStorage=true` into something
//! usable with custom endpoints, so the mapping is done here once, for both forms.

/// Azurite's well-known account (the same for every emulator install).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub key: String,
    /// Base URLs without a trailing slash, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
    pub blob_endpoint: String,
    pub queue_endpoint: String,
    pub table_endpoint: String,
}

impl Account {
    pub fn parse(conn: &str) -> Result<Account, String> {
        let mut kv = std::collections::HashMap::new();
        for part in conn.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not a Key=Value pair"))?;
            kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let get = |k: &str| kv.get(k).cloned();
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let ep = |port: u16| format!("http://127.0.0.1:{port}/{DEV_ACCOUNT}");
            return Ok(Account {
                name: DEV_ACCOUNT.into(),
                key: DEV_KEY.into(),
                blob_endpoint: ep(10000),
                queue_endpoint: ep(10001),
                table_endpoint: ep(10002),
            });
        }
        let name = get("accountname").ok_or("AccountName is missing")?;
        let key = get("accountkey").ok_or(
            "AccountKey is missing (only shared-key connection strings are supported; SAS tokens are not)",
        )?;
        let protocol = get("defaultendpointsprotocol").unwrap_or_else(|| "https".into());
        let suffix = get("endpointsuffix").unwrap_or_else(|| "core.windows.net".into());
        let endpoint = |setting: &str, service: &str| {
            get(setting)
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("{protocol}://{name}.{service}.{suffix}"))
        };
        Ok(Account {
            blob_endpoint: endpoint("blobendpoint", "blob"),
            queue_endpoint: endpoint("queueendpoint", "queue"),
            table_endpoint: endpoint("tableendpoint", "table"),
            name,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_storage_maps_to_azurite() {
        let a = Account::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(a.name, DEV_ACCOUNT);
        assert_eq!(a.key, DEV_KEY);
        assert_eq!(a.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(a.queue_endpoint, "http://127.0.0.1:10001/devstoreaccount1");
        assert_eq!(a.table_endpoint, "http://127.0.0.1:10002/devstoreaccount1");
    }

    #[test]
    fn account_strings_and_explicit_endpoints() {
        let a = Account::parse(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(a.table_endpoint, "https://acct.table.core.windows.net");
        assert_eq!(a.key, "a2V5");
        let b = Account::parse(
            "AccountName=x;AccountKey=k;QueueEndpoint=http://10.0.0.1:9/x/;DefaultEndpointsProtocol=http",
        )
        .unwrap();
        assert_eq!(b.queue_endpoint, "http://10.0.0.1:9/x");
        assert_eq!(b.blob_endpoint, "http://x.blob.core.windows.net");
        assert!(Account::parse("AccountName=x").is_err());
        assert!(Account::parse("garbage").is_err());
    }
}
