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

/// A server-side failure: logged in full here, answered with its one-line summary.
fn internal(e: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %e, "a gRPC call failed on the server side");
    Status::internal(e.to_string())
}
