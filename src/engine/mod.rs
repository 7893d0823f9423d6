//! Running orchestrations: the orchestrator API ([`context`]), pure replay ([`replay`]), the
//! name registry ([`registry`]) and the workers that drive instances through a store
//! ([`executor`]).

pub mod context;
pub mod episode;
pub mod executor;
pub mod registry;
pub mod remote;
pub mod replay;

#[cfg(test)]
mod episode_tests;
#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod rewind_episode_tests;

pub use context::{ActivityContext, OrchestrationContext, RetryOptions, TaskFailure};
pub use registry::{ActivityError, OrchestrationError, Registry};
