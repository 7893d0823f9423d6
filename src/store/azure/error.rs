//! Storage errors with their HTTP status, so callers can tell 404/409/412 from real failures.

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct AzError {
    pub status: Option<u16>,
    pub message: String,
}

impl AzError {
    pub fn is(&self, status: u16) -> bool {
        self.status == Some(status)
    }

    /// `Ok(())` when the error is the given (expected) status, else the error.
    pub fn ok_if(self, status: u16) -> Result<(), AzError> {
        if self.is(status) {
            Ok(())
        } else {
            Err(self)
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self {
            status: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for AzError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<azure_core::Error> for AzError {
    fn from(e: azure_core::Error) -> Self {
        let status = match e.kind() {
            azure_core::error::ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
            _ => None,
        };
        let mut message = e.to_string();
        if status.is_none() && matches!(e.kind(), azure_core::error::ErrorKind::Io) {
            message.push_str(
                " (is the storage account reachable? For UseDevelopmentStorage=true start Azurite: ./scripts/azurite.sh start)",
            );
        }
        Self { status, message }
    }
}

impl From<AzError> for StoreError {
    fn from(e: AzError) -> Self {
        StoreError::Backend(e.message)
    }
}
