//! Every way a command can fail, with its message and exit code, decided in one place.

use std::process::ExitCode;

use crate::client::ClientError;
use crate::config::ConfigError;
use crate::storage::StorageError;

/// Exit codes. clap itself exits with 2 for a malformed command line, so input errors the
/// commands find later share that code.
pub mod exit {
    /// Storage, configuration or another failure not caused by the arguments.
    pub const FAILURE: u8 = 1;
    /// The arguments or the input they point at are wrong.
    pub const USAGE: u8 = 2;
    /// No instance has that id.
    pub const NOT_FOUND: u8 = 3;
    /// The instance exists but its state does not allow the operation.
    pub const WRONG_STATE: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input found after parsing: JSON, an unreadable `@file`, contradictory flags.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The user answered "no" to a confirmation; nothing was changed.
    #[error("{0}")]
    Declined(String),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Client(e) => match e {
                ClientError::InvalidInput(_) | ClientError::UnknownOrchestrator(_) => exit::USAGE,
                ClientError::NotFound(_) => exit::NOT_FOUND,
                ClientError::Gone { .. }
                | ClientError::AlreadyExists { .. }
                | ClientError::PreconditionFailed(_) => exit::WRONG_STATE,
                ClientError::Store(_) => exit::FAILURE,
            },
            CliError::Storage(StorageError::UnknownConnection(_) | StorageError::NotOffered(_))
            | CliError::Storage(StorageError::InvalidConnectionString { .. }) => exit::USAGE,
            CliError::Storage(_) | CliError::Config(_) | CliError::Declined(_) => exit::FAILURE,
            CliError::Other(_) => exit::FAILURE,
        }
    }

    /// The one line printed on stderr. Messages from lower layers may span lines (SQLite and
    /// I/O errors sometimes do); they are joined so that scripts can rely on a single line.
    pub fn line(&self) -> String {
        let text = self.to_string();
        let joined: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        format!("error: {}", joined.join(" "))
    }

    /// Prints the line on stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("{}", self.line());
        ExitCode::from(self.exit_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RuntimeStatus;
    use crate::store::StoreError;

    #[test]
    fn client_errors_map_to_exit_codes() {
        let cases = [
            (ClientError::InvalidInput("x".into()), exit::USAGE),
            (ClientError::UnknownOrchestrator("X".into()), exit::USAGE),
            (ClientError::NotFound("i".into()), exit::NOT_FOUND),
            (
                ClientError::Gone {
                    instance_id: "i".into(),
                    status: RuntimeStatus::Completed,
                },
                exit::WRONG_STATE,
            ),
            (
                ClientError::AlreadyExists {
                    instance_id: "i".into(),
                    status: RuntimeStatus::Running,
                },
                exit::WRONG_STATE,
            ),
            (
                ClientError::PreconditionFailed("p".into()),
                exit::WRONG_STATE,
            ),
            (
                ClientError::Store(StoreError::Backend("disk".into())),
                exit::FAILURE,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(CliError::from(e.clone()).exit_code(), code, "{e:?}");
        }
    }

    #[test]
    fn storage_errors_map_to_exit_codes() {
        let unknown = CliError::from(StorageError::UnknownConnection("Nope".into()));
        assert_eq!(unknown.exit_code(), exit::USAGE);
        assert!(unknown.line().contains("'Nope'"));
        let open = CliError::from(StorageError::Open(StoreError::Backend("locked".into())));
        assert_eq!(open.exit_code(), exit::FAILURE);
    }

    #[test]
    fn the_message_is_one_line() {
        let e = CliError::Other(anyhow::anyhow!("first\n  second\n\nthird"));
        assert_eq!(e.line(), "error: first second third");
    }
}
