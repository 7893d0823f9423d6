//! taskhub: durable orchestrations with the Azure Durable Functions management plane.
//!
//! - [`model`]: the shared vocabulary (instance ids, runtime statuses, history events).
//! - [`store`]: the one storage seam ([`store::Store`]) and its backends.
//! - [`server`]: starting a server with an application's [`engine::Registry`]; [`cli::run`]
//!   gives an application the whole command line, `serve` included.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod grpc;
pub mod http;
pub mod model;
pub mod runtime;
pub mod samples;
pub mod server;
pub mod storage;
pub mod store;
