//! The promises every [`Store`](super::Store) backend keeps, as one suite each backend runs.
