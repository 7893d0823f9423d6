//! Workers that drive instances through a store: orchestration episodes and activity calls.

use std::sync::Arc;

use super::Registry;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    pub orchestration_workers: usize,
    pub activity_workers: usize,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            orchestration_workers: 32,
            activity_workers: 32,
        }
    }
}

/// Running workers for one hub; [`shutdown`](ExecutorHandle::shutdown) stops them gracefully.
pub struct ExecutorHandle {}

impl ExecutorHandle {
    pub async fn shutdown(self) {}
}

pub fn spawn(
    _store: Arc<dyn Store>,
    _registry: Arc<Registry>,
    _options: ExecutorOptions,
) -> ExecutorHandle {
    ExecutorHandle {}
}
