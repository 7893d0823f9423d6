//! Every failure a gRPC call can meet, as a `tonic::Status`, in one place (as `http::error` is for
//! the HTTP API): the code says what kind of mistake it was, the message says what to do.

use tonic::{Code, Status};

use crate::client::ClientError;
use crate::engine::remote::RemoteError;
use crate::storage::StorageError;

pub(crate) fn from_client(e: ClientError) -> Status {
    match e {
        ClientError::InvalidInput(m) => Status::invalid_argument(m),
        ClientError::UnknownOrchestrator(_) => Status::not_found(e.to_string()),
        ClientError::NotFound(_) => Status::not_found(e.to_string()),
        ClientError::Gone { .. } | ClientError::PreconditionFailed(_) => {
            Status::failed_precondition(e.to_string())
        }
        ClientError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        ClientError::Store(inner) => internal(&inner),
    }
}

pub(crate) fn from_remote(e: RemoteError) -> Status {
    let code = match &e {
        RemoteError::UnknownToken => Code::NotFound,
        RemoteError::Mismatch(_) => Code::InvalidArgument,
        RemoteError::LockLost => Code::Aborted,
        RemoteError::Store(_) => return internal(&e),
    };
    Status::new(code, e.to_string())
}

pub(crate) fn from_storage(e: StorageError) -> Status {
    internal(&e)
}

/// A server-side failure: logged in full here under a request id; the caller gets only the id
/// (the detail can hold file paths and storage error text).
fn internal(e: &dyn std::fmt::Display) -> Status {
    let request_id = crate::model::new_guid_n();
    tracing::error!(%request_id, error = %e, "a gRPC call failed on the server side");
    Status::internal(format!(
        "the server failed; its log has the details under request id {request_id}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_server_failure_answers_without_its_detail() {
        let s = from_client(ClientError::Store(StoreError::Backend(
            "disk I/O error at /var/lib/secret/taskhub.db".into(),
        )));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("/var/lib"), "{}", s.message());
        assert!(s.message().contains("request id"));
    }

    #[test]
    fn a_callers_mistake_says_what_it_was() {
        assert_eq!(
            from_client(ClientError::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        let s = from_remote(RemoteError::Mismatch("belongs to 'y'".into()));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("belongs to 'y'"));
    }
}
