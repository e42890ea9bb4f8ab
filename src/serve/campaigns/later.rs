//! Runs that start later: scheduled starts, test sends, and campaigns
//! paused by the quota day or the send window that resume by themselves.

use super::*;

/// How often paused runs are looked at (env `ZNS_AUTO_RESUME_POLL_MS`,
/// for tests; default 30 s, well inside a minute of the window opening).
pub fn auto_resume_poll() -> Duration {
    std::env::var("ZNS_AUTO_RESUME_POLL_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(30))
}

fn window_of(s: Option<&str>) -> Option<crate::model::window::SendWindow> {
    s?.parse::<crate::model::window::WindowSetting>()
        .ok()?
        .window()
}

/// How often the scheduler looks for campaigns whose time came.
const SCHEDULER_TICK: Duration = Duration::from_millis(500);

/// A run paused by the quota day or the send window, and when it stopped.
#[derive(Debug, Clone)]
pub(super) struct Waiting {
    pub(super) reason: StopReason,
    /// The OA's day it stopped on (a quota pause ends with that day).
    pub(super) day: String,
}

impl Campaigns {
    pub fn set_auto_resume(&self, on: bool) {
        self.auto_resume.store(on, Ordering::Relaxed);
    }

    pub fn auto_resume(&self) -> bool {
        self.auto_resume.load(Ordering::Relaxed)
    }

    /// When a run paused by the quota day or the send window will go on by
    /// itself (the OA's local time, `dd/mm/yyyy HH:MM`); None when it will not.
    pub fn resumes_at(&self, name: &str, send_window: Option<&str>) -> Option<String> {
        if !self.auto_resume() {
            return None;
        }
        let w = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()?;
        let now = crate::model::clock::now();
        let at = match w.reason {
            StopReason::Quota => crate::model::clock::next_day_start(now),
            _ => window_of(send_window)
                .map(|win| win.next_open(now))
                .unwrap_or(now),
        };
        Some(crate::campaign::fmt_when(crate::model::clock::to_ms(at)))
    }

    /// Whether a waiting run may go on now.
    fn ready(w: &Waiting, send_window: Option<&str>) -> bool {
        match w.reason {
            StopReason::Quota => crate::model::clock::today_key() != w.day,
            _ => window_of(send_window).is_none_or(|win| win.contains(crate::model::clock::now())),
        }
    }

    /// While serve runs: every `every`, start again the runs paused by the
    /// quota day (once the next day began) or the send window (once it is
    /// open), if the switch is on and nobody paused them since.
    pub async fn auto_resume_loop(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if self.is_shutting_down() {
                return;
            }
            if !self.auto_resume() {
                continue;
            }
            let waiting: Vec<(String, Waiting)> = self
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(n, w)| (n.clone(), w.clone()))
                .collect();
            for (name, w) in waiting {
                let base = self.base.clone();
                let n = name.clone();
                let status = tokio::task::spawn_blocking(move || base.status(Some(&n))).await;
                let line = match status {
                    Ok(Ok(Some(lines))) => lines.into_iter().next(),
                    _ => None,
                };
                let Some(line) = line else {
                    self.waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&name);
                    continue;
                };
                if !Self::ready(&w, line.send_window.as_deref()) {
                    continue;
                }
                self.waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                if self.running_here(&name) || line.status != "paused" {
                    continue;
                }
                // Serve carries on a campaign a person started: no actor.
                match self.start(&name, None, None).await {
                    Ok(()) => {
                        tracing::info!(campaign = %name, "resumed by itself: the {} allows sending again",
                        if w.reason == StopReason::Quota { "new quota day" } else { "send window" })
                    }
                    Err(e) => {
                        tracing::warn!(campaign = %name, "not resumed by itself: {}", e.public_message())
                    }
                }
            }
        }
    }

    /// Start the campaign at `at_ms` (kept in the ledger; [`Self::run_scheduler`]
    /// starts it then, also after a restart of `serve`).
    pub async fn schedule(
        self: &Arc<Self>,
        name: &str,
        at_ms: i64,
        actor: &Actor,
    ) -> Result<(), WebError> {
        self.permit(actor, Action::Schedule, Some(name)).await?;
        if self.running_here(name) {
            return Err(WebError::conflict("already_running", [("name", name)]));
        }
        let this = self.clone();
        let name = name.to_string();
        let actor = actor.clone();
        tokio::task::spawn_blocking(move || {
            let (ws, _) = this.resume_request(&name, None)?;
            probe_lock(&ws.state, &name)?;
            this.base
                .set_schedule(&name, Some(at_ms))
                .map_err(not_found)?;
            let when = format!("at {}", campaign::fmt_when(at_ms));
            ws.audit(&actor, Action::Schedule, Some(&name), &when)?;
            tracing::info!(campaign = %name, at = %campaign::fmt_when(at_ms), "scheduled");
            Ok(())
        })
        .await
        .map_err(blocking_err)?
    }

    /// Cancel the campaign's scheduled start; whether it had one.
    pub async fn unschedule(self: &Arc<Self>, name: &str) -> Result<bool, WebError> {
        let base = self.base.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let had = base.schedules()?.iter().any(|s| s.campaign == name);
            if had {
                base.set_schedule(&name, None)?;
                tracing::info!(campaign = %name, "schedule cancelled");
            }
            Ok::<_, CoreError>(had)
        })
        .await
        .map_err(blocking_err)?
        .map_err(not_found)
    }

    /// Send the first accepted row's data to each test phone (not while the
    /// campaign runs); recorded apart from the campaign's rows.
    pub async fn send_test(
        self: &Arc<Self>,
        name: &str,
        phones: Vec<String>,
        actor: &Actor,
    ) -> Result<Vec<campaign::TestSend>, WebError> {
        self.permit(actor, Action::TestSend, Some(name)).await?;
        self.free_here(name, "test_while_running")?;
        let (ws, mut prepared) = self.with_prepared(name, None, |ws, p| Ok((ws, p))).await?;
        if !prepared.import_done() {
            return Err(WebError::conflict("not_imported", [("name", name)]));
        }
        let sent = ws.send_tests(&mut prepared, &phones).await?;
        // The phones masked: the audit log is read by every viewer.
        let to: Vec<_> = sent
            .iter()
            .map(|t| format!("{} {}", crate::model::phone::mask(&t.phone), t.outcome))
            .collect();
        let (ws2, name2, actor2) = (ws.clone(), name.to_string(), actor.clone());
        tokio::task::spawn_blocking(move || {
            ws2.audit(&actor2, Action::TestSend, Some(&name2), &to.join(", "))
        })
        .await
        .map_err(blocking_err)??;
        Ok(sent)
    }

    /// Start each scheduled campaign at its time, until serve stops. One
    /// task per serve; the campaign lock keeps a start single (a CLI
    /// waiting for the same time holds it, and wins).
    pub async fn run_scheduler(self: Arc<Self>) {
        let mut retry_at: HashMap<String, Instant> = HashMap::new();
        while !self.is_shutting_down() {
            let due = self
                .base_list("scheduled campaigns", Workspace::schedules)
                .await;
            let now = crate::model::clock::now_ms();
            for s in due.into_iter().filter(|s| s.start_at_ms <= now) {
                if self.is_shutting_down() || self.running_here(&s.campaign) {
                    continue;
                }
                if retry_at
                    .get(&s.campaign)
                    .is_some_and(|t| *t > Instant::now())
                {
                    continue;
                }
                // Permitted and audited when it was scheduled.
                match self.start(&s.campaign, None, None).await {
                    Ok(()) => {
                        retry_at.remove(&s.campaign);
                        tracing::info!(campaign = %s.campaign, "started: its scheduled time came");
                    }
                    // Another process holds it (a CLI started it at its
                    // time): look again shortly; its start clears the schedule.
                    Err(WebError::Conflict(why)) => {
                        tracing::debug!(campaign = %s.campaign, "scheduled start waits: {why}");
                    }
                    Err(e) => {
                        tracing::warn!(campaign = %s.campaign, "scheduled start failed (tried again in a minute): {e}");
                        retry_at
                            .insert(s.campaign.clone(), Instant::now() + Duration::from_secs(60));
                    }
                }
            }
            tokio::time::sleep(SCHEDULER_TICK).await;
        }
    }
}
