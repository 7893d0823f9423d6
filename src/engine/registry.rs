//! Which orchestrators and activities exist, by name (aliases included).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::{BoxFuture, LocalBoxFuture};
use serde_json::Value;

use super::context::{ActivityContext, OrchestrationContext};

/// Why an orchestrator function failed; becomes the instance's failure details.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct OrchestrationError {
    pub error_type: String,
    pub message: String,
}

impl OrchestrationError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            error_type: "OrchestrationFailure".into(),
            message: message.into(),
        }
    }
}

impl From<super::context::TaskFailure> for OrchestrationError {
    fn from(f: super::context::TaskFailure) -> Self {
        Self {
            error_type: f.error_type,
            message: f.message,
        }
    }
}

impl From<serde_json::Error> for OrchestrationError {
    fn from(e: serde_json::Error) -> Self {
        Self {
            error_type: "SerializationError".into(),
            message: e.to_string(),
        }
    }
}

/// Why an activity failed; delivered to the orchestration as a TaskFailed event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ActivityError {
    pub error_type: String,
    pub message: String,
}

impl ActivityError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            error_type: "ActivityFailure".into(),
            message: message.into(),
        }
    }
}

impl From<serde_json::Error> for ActivityError {
    fn from(e: serde_json::Error) -> Self {
        Self {
            error_type: "SerializationError".into(),
            message: e.to_string(),
        }
    }
}

pub type OrchestrationResult = Result<Value, OrchestrationError>;
pub type ActivityResult = Result<Value, ActivityError>;

/// Orchestrators run inside replay, on one thread, so their futures need not be `Send`.
pub type OrchestratorFn =
    Arc<dyn Fn(OrchestrationContext) -> LocalBoxFuture<'static, OrchestrationResult> + Send + Sync>;
pub type ActivityFn =
    Arc<dyn Fn(ActivityContext) -> BoxFuture<'static, ActivityResult> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Registry {
    orchestrators: HashMap<String, OrchestratorFn>,
    activities: HashMap<String, ActivityFn>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn orchestrator<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(OrchestrationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = OrchestrationResult> + 'static,
    {
        let f: OrchestratorFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.orchestrators.insert(name.to_string(), f);
        self
    }

    pub fn activity<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(ActivityContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActivityResult> + Send + 'static,
    {
        let f: ActivityFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.activities.insert(name.to_string(), f);
        self
    }

    /// Registers `alias` as another name of an already registered orchestrator or activity.
    pub fn alias(&mut self, alias: &str, name: &str) -> &mut Self {
        if let Some(f) = self.orchestrators.get(name).cloned() {
            self.orchestrators.insert(alias.to_string(), f);
        }
        if let Some(f) = self.activities.get(name).cloned() {
            self.activities.insert(alias.to_string(), f);
        }
        self
    }

    pub fn get_orchestrator(&self, name: &str) -> Option<&OrchestratorFn> {
        self.orchestrators.get(name)
    }

    pub fn get_activity(&self, name: &str) -> Option<&ActivityFn> {
        self.activities.get(name)
    }

    pub fn has_orchestrator(&self, name: &str) -> bool {
        self.orchestrators.contains_key(name)
    }

    pub fn orchestrator_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.orchestrators.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Removes every orchestrator and activity `other` registers (by name).
    pub fn remove_all_of(&mut self, other: &Registry) {
        self.orchestrators
            .retain(|name, _| !other.orchestrators.contains_key(name));
        self.activities
            .retain(|name, _| !other.activities.contains_key(name));
    }
}
