//! zns-batch: resumable bulk sender for Zalo ZNS Journey messages.
//!
//! The layers, top to bottom (imports point down only; `scripts/check-layers.py`
//! checks it):
//! - faces: [`cli`] (the command line) and [`serve`] (web console, JSON API,
//!   webhooks) — they reach campaigns only through [`campaign`];
//! - the core: [`campaign`] — settings, plan, start/resume/pause, outcome,
//!   status, report;
//! - below it: [`engine`] (the runner, reconcile, pace, stop), [`store`] (the
//!   ledger: all SQL), [`csv_input`], [`provider`] (the adapters) and
//!   [`sandbox`] (a server beside them);
//! - [`model`]: plain types and rules every layer shares (row states, phones,
//!   the OA's clock, send windows, template specs).
//!
//! `main.rs` parses arguments and dispatches; everything else lives here so
//! integration tests can drive the same pipeline.

// The console's strings, one YAML file per language (`locales/vi.yml`,
// `locales/en.yml`), built into the binary; `t!` looks them up.
rust_i18n::i18n!("locales", fallback = "vi");

pub mod campaign;
pub mod cli;
pub mod csv_input;
pub mod engine;
pub mod model;
pub mod provider;
pub mod sandbox;
pub mod serve;
pub mod store;
