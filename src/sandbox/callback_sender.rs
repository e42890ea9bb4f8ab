//! Sends the delivery callbacks `callbacks` queued, when they come due:
//! a bounded number at once, each retried with a doubling backoff, and
//! counted in the sandbox's stats.

use std::sync::Arc;

use rand::seq::SliceRandom;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::callbacks::{CallbackSettings, Job, Request};
use super::state::Shared;

/// The dispatcher: waits for callbacks to come due, then sends them.
/// Aborting its task aborts the callbacks in flight.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    settings: CallbackSettings,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let client = match reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("sandbox callbacks disabled: {e}");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    // Arrival order is due order: the delay is the same for every job.
    let mut pending: std::collections::VecDeque<Job> = Default::default();
    let mut last_arrival = Instant::now();
    loop {
        let window = settings.out_of_order;
        let next = match pending.front() {
            None => None,
            Some(_) if settings.burst => Some(last_arrival + settings.delay),
            // Reordering needs company: wait for a full group, or one more
            // delay for a group that never fills.
            Some(j) if window > 1 && pending.len() < window => Some(j.due + settings.delay),
            Some(j) => Some(j.due),
        };
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => {
                    last_arrival = Instant::now();
                    pending.push_back(job);
                }
                None => break,
            },
            _ = sleep_until_some(next) => {
                let now = Instant::now();
                let mut due: Vec<Job> = if window > 1 && !settings.burst {
                    // A group goes out together, a little early for its last.
                    let n = window.min(pending.len());
                    pending.drain(..n).collect()
                } else {
                    let mut due = Vec::new();
                    while pending.front().is_some_and(|j| settings.burst || j.due <= now) {
                        due.extend(pending.pop_front());
                    }
                    due
                };
                if window > 1 {
                    let mut g = shared.lock();
                    for group in due.chunks_mut(window) {
                        group.shuffle(&mut g.rng);
                    }
                }
                for job in due {
                    let permit = permits.clone().acquire_owned().await.ok();
                    let (client, shared, settings) = (client.clone(), shared.clone(), settings.clone());
                    in_flight.spawn(async move {
                        deliver(&client, &shared, &settings, job).await;
                        drop(permit);
                    });
                }
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Send one callback, retrying with doubling backoff.
async fn deliver(client: &reqwest::Client, shared: &Shared, s: &CallbackSettings, job: Job) {
    let mut wait = s.backoff;
    for attempt in 1..=s.attempts.max(1) {
        shared.lock().stats.callbacks_sent += 1;
        let req = match &job.request {
            Request::SignedPost { body, mac } => client
                .post(&job.url)
                .header("content-type", "application/json")
                .header("X-ZEvent-Signature", mac)
                .header("X-ZEvent-Server", "ZNS")
                .body(body.clone()),
            Request::Post { body } => client
                .post(&job.url)
                .header("content-type", "application/json")
                .body(body.clone()),
            Request::Get { query } => client.get(&job.url).query(query),
        };
        if req.send().await.is_ok_and(|r| r.status().is_success()) {
            shared.lock().stats.callbacks_acknowledged += 1;
            return;
        }
        if attempt < s.attempts {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    shared.lock().stats.callbacks_given_up += 1;
}
