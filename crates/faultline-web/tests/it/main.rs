//! The server's tests, in one binary: ingest endpoints, the JSON API, the System Health page
//! over HTTP, and the page in a real headless Chromium.

mod api;
mod browser;
mod common;
mod ingest;
mod page;
