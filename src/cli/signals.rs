//! Ctrl-C and SIGTERM on the command line: the first stops the run
//! gracefully, the second quits at once.

use std::sync::Arc;

use crate::campaign::{ExitCode, Stop, StopReason, INTERRUPTED};

/// First Ctrl-C / SIGTERM: stop claiming, let in-flight requests finish
/// (up to the runner's drain deadline), checkpoint, exit 3. Second: quit at
/// once — still safe: rows already marked `in_flight` are in doubt on resume.
///
/// The handlers are registered here, before the task starts, so no signal
/// slips through to the default action (killing the process) meanwhile.
pub fn watch(stop: Arc<Stop>, talk: bool, continue_with: String) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Best effort: the tokio watcher below still stops the run.
            let _ = signal_hook::flag::register(sig, stop.signal_flag());
        }
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    tokio::spawn(async move {
        for round in 0..2 {
            #[cfg(unix)]
            {
                async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                    match s {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
                tokio::select! {
                    _ = recv(&mut int) => {}
                    _ = recv(&mut term) => {}
                }
            }
            #[cfg(not(unix))]
            {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
            }
            if round == 0 {
                if talk {
                    eprintln!("\nstopping: no new rows; waiting for requests in flight (press Ctrl-C again to quit now)");
                }
                stop.request(StopReason::Interrupted, INTERRUPTED);
            } else {
                eprintln!(
                    "quitting now; `{continue_with}` continues (rows that were in flight are handled as in doubt)"
                );
                // Quitting at once is the point of a second Ctrl-C: no unwinding.
                std::process::exit(ExitCode::Paused.code());
            }
        }
    })
}
