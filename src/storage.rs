//! Connection strings → stores. A connection is named by a setting (an environment variable,
//! as `AzureWebJobsStorage` is); its value picks the backend.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::sqlite::SqliteDb;
use crate::store::{Store, StoreError};

/// What a connection string selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageSpec {
    Sqlite(PathBuf),
    /// `UseDevelopmentStorage=true` or an account connection string.
    AzureStorage(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("the connection setting '{0}' is not defined (set an environment variable of that name to a connection string)")]
    UnknownConnection(String),
    /// A request named a connection setting the server does not offer. One answer for every such
    /// name, defined or not, so that it reveals nothing about the server's environment.
    #[error("the connection setting '{0}' is not one this server offers (a request may name the default connection setting, or one listed in the server's `connections` setting)")]
    NotOffered(String),
    #[error("the connection string in '{setting}' is not valid: {message}")]
    InvalidConnectionString { setting: String, message: String },
    #[error("Azure Storage connection strings are not supported by this build (built without the 'azure' feature)")]
    AzureNotSupported,
    /// The server's own settings are wrong (not the caller's pick): a configuration error.
    #[error("the server's storage settings are not valid: {0}")]
    Config(String),
    /// A request named a task hub this server does not run and that is not in storage.
    #[error("the task hub '{0}' does not exist on this connection (this server runs the hubs named by its `task_hub` and `task_hubs` settings, and manages any other hub that already exists in storage)")]
    NoSuchHub(String),
    #[error("cannot open storage: {0}")]
    Open(#[from] StoreError),
}

/// Parses a connection string. Empty means the embedded default at `default_sqlite`.
pub fn parse_connection_string(value: &str, default_sqlite: &Path) -> Result<StorageSpec, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(StorageSpec::Sqlite(default_sqlite.to_path_buf()));
    }
    if let Some(path) = value.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err("'sqlite:' must be followed by a file path (or ':memory:')".into());
        }
        return Ok(StorageSpec::Sqlite(PathBuf::from(path)));
    }
    let is_azure = value
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, _)| {
            let k = k.trim();
            k.eq_ignore_ascii_case("UseDevelopmentStorage") || k.eq_ignore_ascii_case("AccountName")
        });
    if is_azure {
        return Ok(StorageSpec::AzureStorage(value.to_string()));
    }
    Err("expected 'sqlite:PATH', 'UseDevelopmentStorage=true' or an Azure Storage account connection string".into())
}

/// Looks up an environment variable (injectable, so tests need not touch the process env).
type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Opens stores by (connection setting, hub) and keeps them open: one SQLite file is opened once
/// however many hubs use it.
pub struct Storage {
    default_setting: String,
    default_sqlite: PathBuf,
    env: EnvLookup,
    sqlite: Mutex<HashMap<PathBuf, Arc<SqliteDb>>>,
    /// One store per (connection string, hub): each runs at most one partition manager.
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    azure: Mutex<HashMap<(String, String), Arc<dyn Store>>>,
}

impl Storage {
    pub fn new(default_setting: &str, default_sqlite: &Path) -> Self {
        Self::with_env(default_setting, default_sqlite, |name| {
            std::env::var(name).ok()
        })
    }

    /// With an explicit environment lookup (tests).
    pub fn with_env(
        default_setting: &str,
        default_sqlite: &Path,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            default_setting: default_setting.to_string(),
            default_sqlite: default_sqlite.to_path_buf(),
            env: Box::new(env),
            sqlite: Mutex::new(HashMap::new()),
            azure: Mutex::new(HashMap::new()),
        }
    }

    pub fn default_setting(&self) -> &str {
        &self.default_setting
    }

    /// Resolves a connection setting name (`None` = the default). `Storage` is Durable Functions'
    /// alias of `AzureWebJobsStorage`. The default setting may be unset (embedded SQLite); any
    /// other name must exist.
    pub fn resolve(&self, setting: Option<&str>) -> Result<StorageSpec, StorageError> {
        let name = match setting {
            None => self.default_setting.as_str(),
            Some(s) if s.eq_ignore_ascii_case("Storage") => "AzureWebJobsStorage",
            Some(s) => s,
        };
        let value = match (self.env)(name) {
            Some(v) => v,
            None if name == self.default_setting || setting.is_none() => String::new(),
            None => return Err(StorageError::UnknownConnection(name.to_string())),
        };
        parse_connection_string(&value, &self.default_sqlite).map_err(|message| {
            StorageError::InvalidConnectionString {
                setting: name.to_string(),
                message,
            }
        })
    }

    /// The store of `hub`, kept open for good: the same store for the same (connection, hub),
    /// as a hub's executor needs.
    pub fn open(&self, setting: Option<&str>, hub: &str) -> Result<Arc<dyn Store>, StorageError> {
        match self.resolve(setting)? {
            StorageSpec::Sqlite(path) => Ok(self.sqlite_db(path)?.hub(hub)),
            StorageSpec::AzureStorage(conn) => self.open_azure(conn, hub),
        }
    }

    /// A store of `hub` that is not kept: for management calls on a hub this process runs no
    /// executor for. It starts nothing and creates nothing until asked to write, and it is gone
    /// with its last handle. (A SQLite file stays open: other hubs live in it.)
    pub fn open_detached(
        &self,
        setting: Option<&str>,
        hub: &str,
    ) -> Result<Arc<dyn Store>, StorageError> {
        match self.resolve(setting)? {
            StorageSpec::Sqlite(path) => Ok(self.sqlite_db(path)?.detached_hub(hub)),
            StorageSpec::AzureStorage(conn) => self.open_azure_detached(&conn, hub),
        }
    }

    fn sqlite_db(&self, path: PathBuf) -> Result<Arc<SqliteDb>, StorageError> {
        let mut dbs = self.sqlite.lock().unwrap();
        if let Some(db) = dbs.get(&path) {
            return Ok(db.clone());
        }
        let db = SqliteDb::open(&path)?;
        dbs.insert(path, db.clone());
        Ok(db)
    }

    #[cfg(feature = "azure")]
    fn open_azure(&self, conn: String, hub: &str) -> Result<Arc<dyn Store>, StorageError> {
        let mut stores = self.azure.lock().unwrap();
        let key = (conn, hub.to_string());
        if let Some(s) = stores.get(&key) {
            return Ok(s.clone());
        }
        let store = self.open_azure_detached(&key.0, hub)?;
        stores.insert(key, store.clone());
        Ok(store)
    }

    #[cfg(feature = "azure")]
    fn open_azure_detached(&self, conn: &str, hub: &str) -> Result<Arc<dyn Store>, StorageError> {
        use crate::store::azure::{AzureOptions, AzureStore};
        let opts = AzureOptions::from_env(|n| (self.env)(n))
            .map_err(|message| StorageError::Config(format!("TASKHUB_AZURE_*: {message}")))?;
        Ok(AzureStore::open(conn, hub, opts)?)
    }

    #[cfg(not(feature = "azure"))]
    fn open_azure(&self, _conn: String, _hub: &str) -> Result<Arc<dyn Store>, StorageError> {
        Err(StorageError::AzureNotSupported)
    }

    #[cfg(not(feature = "azure"))]
    fn open_azure_detached(&self, _conn: &str, _hub: &str) -> Result<Arc<dyn Store>, StorageError> {
        Err(StorageError::AzureNotSupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_select_the_backend() {
        let d = Path::new("/d.db");
        assert_eq!(
            parse_connection_string("", d),
            Ok(StorageSpec::Sqlite(d.into()))
        );
        assert_eq!(
            parse_connection_string("sqlite:/tmp/x.db", d),
            Ok(StorageSpec::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            parse_connection_string("sqlite::memory:", d),
            Ok(StorageSpec::Sqlite(":memory:".into()))
        );
        assert!(matches!(
            parse_connection_string("UseDevelopmentStorage=true", d),
            Ok(StorageSpec::AzureStorage(_))
        ));
        assert!(parse_connection_string("nonsense", d).is_err());
        assert!(parse_connection_string("sqlite:", d).is_err());
    }

    #[test]
    fn settings_resolve_through_the_environment() {
        let s = Storage::with_env("AzureWebJobsStorage", Path::new("/d.db"), |n| {
            (n == "Other").then(|| "sqlite:/o.db".to_string())
        });
        assert_eq!(
            s.resolve(None).unwrap(),
            StorageSpec::Sqlite("/d.db".into())
        );
        assert_eq!(
            s.resolve(Some("Storage")).unwrap(),
            StorageSpec::Sqlite("/d.db".into())
        );
        assert_eq!(
            s.resolve(Some("Other")).unwrap(),
            StorageSpec::Sqlite("/o.db".into())
        );
        assert!(matches!(
            s.resolve(Some("Missing")),
            Err(StorageError::UnknownConnection(_))
        ));
    }

    /// A bad `TASKHUB_AZURE_*` setting is the server's configuration, not the caller's pick: it
    /// is an error of the server (HTTP 500, exit code 1), not a 400 or a usage error.
    #[cfg(feature = "azure")]
    #[test]
    fn a_bad_server_side_azure_setting_is_a_configuration_error() {
        let s = Storage::with_env("AzureWebJobsStorage", Path::new("/d.db"), |n| match n {
            "AzureWebJobsStorage" => Some("UseDevelopmentStorage=true".into()),
            "TASKHUB_AZURE_PARTITION_COUNT" => Some("99".into()),
            _ => None,
        });
        let e = s.open(None, "Hub").err().expect("refused");
        assert!(matches!(e, StorageError::Config(_)), "{e:?}");
        let response = axum::response::IntoResponse::into_response(
            crate::http::error::ApiError::from(e.clone()),
        );
        assert_eq!(
            response.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(crate::cli::error::CliError::Storage(e).exit_code(), 1);
    }
}
