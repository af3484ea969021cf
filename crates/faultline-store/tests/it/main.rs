//! Integration tests of the store: every test body runs on SQLite and on PostgreSQL.

mod alerts;
mod grouping;
mod harness;
mod instances;
mod partitions;
mod store;
