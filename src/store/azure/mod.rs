//! The Azure Storage backend: the Durable Task Framework's task hub layout
//! (`spec/azure-storage-taskhub.md`) on Tables, Queues and Blobs, so taskhub can manage the hubs
//! of real Durable Functions apps and share its own hubs between processes.
//!
//! Only this module names the Azure crates. Map:
//! - [`connection`]: connection strings (incl. `UseDevelopmentStorage=true`) → account + endpoints
//! - [`keys`]: `^` key escaping, FNV-1a partitioning, row keys, OData literals
//! - [`dtfx`], [`messages`]: DTFx JSON conventions and the queue `MessageData`
//! - [`entities`]: History / Instances rows with exact Edm types
//! - [`blobs`]: large payloads as gzip blobs
//! - [`tables`], [`queues`], [`error`]: thin wrappers over the crates
//! - [`hub`], [`history`], [`rewind`]: the hub's resources and its table algorithms
//! - [`leases`], [`sessions`], [`worker`], [`activities`]: the execution half
//! - [`store`]: the [`Store`](crate::store::Store) implementation

mod activities;
pub mod blobs;
pub mod connection;
pub mod dtfx;
pub mod entities;
mod error;
mod history;
pub mod hub;
pub mod keys;
mod leases;
pub mod messages;
pub mod options;
mod query;
pub mod queues;
mod rewind;
mod sessions;
mod store;
pub mod tables;
mod worker;

pub use connection::Account;
pub use error::AzError;
pub use options::AzureOptions;
pub use store::AzureStore;
