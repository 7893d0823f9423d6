//! The embedded default backend: one SQLite file, several task hubs.
//! (Placeholder API until the backend lands from its branch.)

use std::path::Path;
use std::sync::Arc;

use super::{Store, StoreError, StoreResult};

pub struct SqliteDb;

impl SqliteDb {
    pub fn open(_path: impl AsRef<Path>) -> StoreResult<Arc<SqliteDb>> {
        Err(StoreError::Backend(
            "the SQLite backend is not built yet".into(),
        ))
    }

    pub fn hub(self: &Arc<Self>, _name: &str) -> Arc<dyn Store> {
        unreachable!("SqliteDb::open never succeeds in the placeholder")
    }
}
