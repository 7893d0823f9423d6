//! The embedded default backend: one SQLite file, several task hubs.
