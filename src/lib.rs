//! zns-batch: resumable bulk sender for Zalo ZNS Journey messages.
//!
//! `main.rs` parses arguments and dispatches; everything else lives here so
//! integration tests can drive the same pipeline.

pub mod app;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod csv_input;
pub mod logging;
pub mod phone;
pub mod preflight;
pub mod printer;
pub mod provider;
pub mod quota;
pub mod reconcile;
pub mod report;
pub mod retry;
pub mod row_state;
pub mod runner;
pub mod sandbox;
pub mod serve;
pub mod signals;
pub mod stop;
pub mod store;
pub mod window;
