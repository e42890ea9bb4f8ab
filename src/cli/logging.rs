//! Log set-up: `tracing` to stderr or a file, as text or JSON lines.
//!
//! Levels: `-q` errors only, default warnings, `-v` info, `-vv` debug;
//! `ZNS_LOG` (an EnvFilter such as `zns_batch=debug`) overrides them.
//! What is logged masks phones (`phone::mask`) and never holds a key.

use std::io::IsTerminal;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, message, fields).
    Json,
}

pub fn init(
    verbose: u8,
    quiet: bool,
    format: LogFormat,
    file: Option<&Path>,
) -> Result<(), String> {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZNS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("zns_batch={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // Escape codes only for a person at a terminal, never in cron mail or files.
    let result = match (file, format) {
        (Some(path), format) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--log-file {}: {e}", path.display()))?;
            let b = builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f));
            match format {
                LogFormat::Text => b.try_init(),
                LogFormat::Json => b.json().try_init(),
            }
        }
        (None, LogFormat::Text) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
        (None, LogFormat::Json) => builder
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .json()
            .try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}
