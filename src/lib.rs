//! taskhub: durable orchestrations with the Azure Durable Functions management plane, and a
//! backend for applications written with Microsoft's Durable Task SDKs.
//!
//! The map, from the edges in (dependencies point down this list; `api` and `model` are leaves):
//! - [`cli`]: the command line (`serve` and Core Tools' `func durable` commands); [`cli::run`]
//!   gives an embedding application all of it with its own [`engine::Registry`].
//! - [`server`]: start-up: configuration + registry → one [`runtime::Runtime`] → the HTTP and
//!   gRPC listeners → one shutdown.
//! - [`http`]: the Durable Functions HTTP management API over [`client`].
//! - [`grpc`]: the Durable Task gRPC endpoint over [`client`] and [`engine::remote`].
//! - [`api`]: the HTTP API's JSON shapes and query rules, shared by `http` and `cli`.
//! - [`runtime`]: a process's task hubs: stores by (connection, hub), executors, remote queues.
//! - [`client`]: the management operations with their state checks, written once for every
//!   surface.
//! - [`engine`]: running orchestrations: the orchestrator API, pure replay and episodes, the
//!   executor, and the queue for remote (SDK) workers.
//! - [`samples`]: the built-in orchestrations the `taskhub` binary registers.
//! - [`storage`] and [`config`]: connection strings → stores; layered configuration.
//! - [`store`]: the one storage seam ([`store::Store`]), its conformance suite and its backends.
//! - [`model`]: the shared vocabulary (instance ids, runtime statuses, history events).
//! - [`metrics`]: the process's Prometheus metrics, counted where things happen and served at
//!   `GET /metrics`.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod model;
pub mod runtime;
pub mod samples;
pub mod server;
pub mod storage;
pub mod store;
