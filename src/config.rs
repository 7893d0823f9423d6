//! Configuration, layered: built-in defaults < `config/taskhub.toml` (or `--config FILE`) <
//! environment (`TASKHUB_…`) < command-line flags (applied by the caller).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG_FILE: &str = "config/taskhub.toml";
pub const DEFAULT_HUB: &str = "DurableFunctionsHub";
pub const DEFAULT_CONNECTION_SETTING: &str = "AzureWebJobsStorage";
pub const DEFAULT_SQLITE_PATH: &str = "./taskhub-data/taskhub.db";

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the server listens on.
    pub listen: SocketAddr,
    /// Address of the Durable Task gRPC endpoint (plain HTTP/2), or `None` (`"off"`) for none.
    #[serde(deserialize_with = "listen_or_off")]
    pub grpc_listen: Option<SocketAddr>,
    /// Task hub used when a request or command names none.
    pub task_hub: String,
    /// Further task hubs this server runs (executors, leases, storage created on first use),
    /// on every connection it offers. A request may name any other hub that already exists in
    /// storage; it is only managed, never run, and opening it creates nothing.
    pub task_hubs: Vec<String>,
    /// Name of the environment variable that holds the default connection string.
    pub connection_setting: String,
    /// Further connection settings a request may name with `connection=` (the default one is
    /// always offered). Any other name is refused: a request must not open whatever database
    /// an environment variable of the server happens to point at.
    pub connections: Vec<String>,
    /// Access key every HTTP request must carry (`code=` or `x-functions-key`), if set. It also
    /// signs the instance links in generated URLs.
    pub access_key: Option<String>,
    /// More keys with the same powers as `access_key` (for rotation); need `access_key`.
    pub access_keys: Vec<String>,
    /// Keys that may only read (GET requests); need `access_key`.
    pub read_only_keys: Vec<String>,
    /// How long the instance links in generated URLs work, in seconds (unset: no expiry).
    pub link_ttl_seconds: Option<u64>,
    /// Allow listening on a non-loopback address without an access key.
    pub allow_unauthenticated_public: bool,
    /// Build management URLs from `X-Forwarded-Host` / `X-Forwarded-Proto` when both are present.
    pub use_forwarded_host: bool,
    /// Largest request body accepted, in bytes (larger → 413).
    pub max_body_bytes: usize,
    /// A connection must send a request's headers within this many seconds of starting it
    /// (or, kept alive, of its previous response); otherwise it is closed.
    pub header_read_timeout_secs: u64,
    /// A request body must arrive within this many seconds (otherwise 408).
    pub body_timeout_secs: u64,
    /// At most this many HTTP connections are open at once; more wait to be accepted.
    pub max_connections: usize,
    /// On shutdown, connections still open after this many seconds are dropped.
    pub shutdown_deadline_secs: u64,
    /// Where the embedded SQLite database lives when no connection string is set.
    pub sqlite_path: PathBuf,
    /// Serve the built-in sample orchestrations (`false`: only the application's own, and the
    /// SDK workers').
    pub samples: bool,
    pub executor: ExecutorConfig,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// Run orchestrations in this process (off = management only).
    pub enabled: bool,
    pub orchestration_workers: usize,
    pub activity_workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7071)),
            // The Durable Task SDKs connect to localhost:4001 when given no address.
            grpc_listen: Some(SocketAddr::from(([127, 0, 0, 1], 4001))),
            task_hub: DEFAULT_HUB.into(),
            task_hubs: Vec::new(),
            connection_setting: DEFAULT_CONNECTION_SETTING.into(),
            connections: Vec::new(),
            access_key: None,
            access_keys: Vec::new(),
            read_only_keys: Vec::new(),
            link_ttl_seconds: None,
            allow_unauthenticated_public: false,
            use_forwarded_host: false,
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout_secs: 30,
            body_timeout_secs: 60,
            max_connections: 512,
            shutdown_deadline_secs: 30,
            sqlite_path: PathBuf::from(DEFAULT_SQLITE_PATH),
            samples: true,
            executor: ExecutorConfig::default(),
        }
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        let workers = crate::engine::executor::ExecutorOptions::default();
        Self {
            enabled: true,
            orchestration_workers: workers.orchestration_workers,
            activity_workers: workers.activity_workers,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name} is not valid: {message}")]
    Env { name: String, message: String },
}

impl Config {
    /// Loads `file` (it must exist), or the default file when present, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies `TASKHUB_*` overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.into(),
                message: e.to_string(),
            })
        }
        if let Some(v) = get("TASKHUB_LISTEN") {
            self.listen = parse("TASKHUB_LISTEN", &v)?;
        }
        if let Some(v) = get("TASKHUB_GRPC_LISTEN") {
            self.grpc_listen = parse_listen_or_off(&v).map_err(|message| ConfigError::Env {
                name: "TASKHUB_GRPC_LISTEN".into(),
                message,
            })?;
        }
        if let Some(v) = get("TASKHUB_TASK_HUB") {
            self.task_hub = v;
        }
        if let Some(v) = get("TASKHUB_TASK_HUBS") {
            self.task_hubs = comma_list(&v);
        }
        if let Some(v) = get("TASKHUB_CONNECTION_SETTING") {
            self.connection_setting = v;
        }
        if let Some(v) = get("TASKHUB_CONNECTIONS") {
            self.connections = comma_list(&v);
        }
        if let Some(v) = get("TASKHUB_ACCESS_KEY") {
            self.access_key = Some(v).filter(|k| !k.is_empty());
        }
        if let Some(v) = get("TASKHUB_ACCESS_KEYS") {
            self.access_keys = comma_list(&v);
        }
        if let Some(v) = get("TASKHUB_READ_ONLY_KEYS") {
            self.read_only_keys = comma_list(&v);
        }
        if let Some(v) = get("TASKHUB_LINK_TTL_SECONDS") {
            self.link_ttl_seconds = Some(parse("TASKHUB_LINK_TTL_SECONDS", &v)?);
        }
        if let Some(v) = get("TASKHUB_ALLOW_UNAUTHENTICATED_PUBLIC") {
            self.allow_unauthenticated_public = parse("TASKHUB_ALLOW_UNAUTHENTICATED_PUBLIC", &v)?;
        }
        if let Some(v) = get("TASKHUB_USE_FORWARDED_HOST") {
            self.use_forwarded_host = parse("TASKHUB_USE_FORWARDED_HOST", &v)?;
        }
        if let Some(v) = get("TASKHUB_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("TASKHUB_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("TASKHUB_HEADER_READ_TIMEOUT_SECS") {
            self.header_read_timeout_secs = parse("TASKHUB_HEADER_READ_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("TASKHUB_BODY_TIMEOUT_SECS") {
            self.body_timeout_secs = parse("TASKHUB_BODY_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("TASKHUB_MAX_CONNECTIONS") {
            self.max_connections = parse("TASKHUB_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = get("TASKHUB_SHUTDOWN_DEADLINE_SECS") {
            self.shutdown_deadline_secs = parse("TASKHUB_SHUTDOWN_DEADLINE_SECS", &v)?;
        }
        if let Some(v) = get("TASKHUB_SQLITE_PATH") {
            self.sqlite_path = PathBuf::from(v);
        }
        if let Some(v) = get("TASKHUB_SAMPLES") {
            self.samples = parse("TASKHUB_SAMPLES", &v)?;
        }
        if let Some(v) = get("TASKHUB_EXECUTOR_ENABLED") {
            self.executor.enabled = parse("TASKHUB_EXECUTOR_ENABLED", &v)?;
        }
        if let Some(v) = get("TASKHUB_ORCHESTRATION_WORKERS") {
            self.executor.orchestration_workers = parse("TASKHUB_ORCHESTRATION_WORKERS", &v)?;
        }
        if let Some(v) = get("TASKHUB_ACTIVITY_WORKERS") {
            self.executor.activity_workers = parse("TASKHUB_ACTIVITY_WORKERS", &v)?;
        }
        Ok(())
    }
}

/// `a, b,c` → `["a", "b", "c"]`, blanks dropped.
fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// `"off"` (any case) or a socket address.
pub fn parse_listen_or_off(value: &str) -> Result<Option<SocketAddr>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|e| format!("expected an address such as 127.0.0.1:4001, or off: {e}"))
}

fn listen_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen_or_off(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_env_layer_in_order() {
        let mut c: Config =
            toml::from_str("task_hub = \"FromFile\"\n[executor]\nactivity_workers = 3").unwrap();
        assert_eq!(c.task_hub, "FromFile");
        assert_eq!(c.executor.activity_workers, 3);
        assert_eq!(c.executor.orchestration_workers, 128);
        c.apply_env(|n| (n == "TASKHUB_TASK_HUB").then(|| "FromEnv".to_string()))
            .unwrap();
        assert_eq!(c.task_hub, "FromEnv");
        assert!(c
            .apply_env(|n| (n == "TASKHUB_LISTEN").then(|| "nope".to_string()))
            .is_err());
    }

    #[test]
    fn grpc_listen_is_an_address_or_off() {
        let c: Config = toml::from_str("grpc_listen = \"off\"").unwrap();
        assert_eq!(c.grpc_listen, None);
        let c: Config = toml::from_str("grpc_listen = \"127.0.0.1:5001\"").unwrap();
        assert_eq!(c.grpc_listen, Some("127.0.0.1:5001".parse().unwrap()));
        assert!(toml::from_str::<Config>("grpc_listen = \"nowhere\"").is_err());
        let mut c = Config::default();
        assert_eq!(c.grpc_listen, Some("127.0.0.1:4001".parse().unwrap()));
        c.apply_env(|n| (n == "TASKHUB_GRPC_LISTEN").then(|| "OFF".to_string()))
            .unwrap();
        assert_eq!(c.grpc_listen, None);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("taskhub = \"typo\"").is_err());
    }
}
