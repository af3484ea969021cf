//! The runtime's tests: the whole application booted in-process (`TestApp`), on SQLite.

mod conformance;
mod jobs;
mod sources;
mod test_app;
