//! Integration tests of the store: every test body runs on SQLite and on PostgreSQL.

mod harness;
mod store;
