//! Entry point: parse arguments, set up logging, dispatch, exit with the
//! command's code.

use clap::Parser;
use zns_batch::campaign::{CoreError, ExitCode};
use zns_batch::cli::app;
use zns_batch::cli::Cli;

fn main() {
    let cli = Cli::parse();
    if prints_for_a_pipe(&cli.command) {
        restore_default_sigpipe();
    }
    if let Err(e) = zns_batch::cli::logging::init(
        cli.verbose,
        cli.quiet,
        cli.log_format,
        cli.log_file.as_deref(),
    ) {
        eprintln!("error: {e}");
        std::process::exit(ExitCode::Usage.code());
    }
    // The runner is one thread of async work (requests, replies, row
    // logic) beside the state writer's thread: no hand-offs between
    // runtime threads, a fifth less CPU per request than a multi-threaded
    // runtime. A standalone sandbox or `serve` answers many clients: all cores.
    let mut builder = if matches!(
        cli.command,
        zns_batch::cli::Command::Sandbox(_) | zns_batch::cli::Command::Serve(_)
    ) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(ExitCode::Fatal.code());
        }
    };
    let logs_to_file = cli.log_file.is_some();
    let code = match runtime.block_on(app::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if logs_to_file {
                // Cron keeps the log file: the reason belongs there too.
                tracing::error!("{e}");
            }
            let about_request = match &e {
                CoreError::Usage(_) => true,
                // A refused file's fix is in the file, not in the flags:
                // the same rule the console words its messages by.
                CoreError::Refused(r) => r.is_about_request(),
                _ => false,
            };
            if about_request {
                eprintln!("(see `zns-batch --help`, or `zns-batch <command> --help` for examples)");
            }
            e.exit_code()
        }
    };
    // Don't wait for lingering connection tasks on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code.code());
}

/// Commands that only print (status, report, audit, …): `| head` closing
/// the pipe should end them quietly, as it ends `cat`. Rust ignores
/// SIGPIPE, so each `println!` past the reader's exit would panic instead.
/// The sending and serving commands keep ignoring it: they must never die
/// on a write, and their output is a line or two at the end.
fn prints_for_a_pipe(command: &zns_batch::cli::Command) -> bool {
    use zns_batch::cli::Command::*;
    !matches!(
        command,
        Run(_) | Resume(_) | Serve(_) | Sandbox(_) | Reconcile(_) | Zalo(_)
    )
}

fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any other thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
