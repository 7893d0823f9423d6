//! Built-in sample orchestrations and activities (design §5).

use crate::engine::Registry;

/// A registry with every sample registered, aliases included.
pub fn registry() -> Registry {
    Registry::new()
}
