//! faultline's runtime: everything between the pure core and the command line.
//!
//! [`Application::build`] turns a [`Config`] into the running service (`faultline serve`);
//! [`ingest::ingest_file`] is the one-shot `faultline ingest`; [`railway_crawl::Crawler`] is the
//! Railway crawl (scheduled, live, or `faultline crawl --once`). Every one of them stores
//! through [`faultline_store::Pipeline`].

pub mod alerting;
mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ingest;
pub mod instance;
pub mod outbox;
pub mod railway_crawl;
pub mod scheduler;

pub use app::Application;
pub use config::Config;
