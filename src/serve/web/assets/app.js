// zns-batch console: drag-and-drop upload with progress, and live counts
// over server-sent events. Everything works without it (plain forms).
"use strict";

// The page's words (JSON the server writes in the page's language).
const WORDS = (() => {
  try { return JSON.parse(document.querySelector('meta[name="js-text"]').content); } catch (_) { return {}; }
})();
// A text with its %{name} blanks filled.
function say(key, vals) {
  let s = WORDS[key] || key;
  for (const k in (vals || {})) s = s.split("%{" + k + "}").join(vals[k]);
  return s;
}
// 1234567 → 1.234.567 (vi) or 1,234,567 (en), as the server writes numbers.
function num(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, WORDS.thousands || ",");
}

function csrfToken() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
}

function setupUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const drop = document.getElementById("drop");
  const file = document.getElementById("file");
  const text = document.getElementById("drop-text");
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  const error = document.getElementById("upload-error");
  const show = () => { if (file.files.length) text.textContent = file.files[0].name + " (" + Math.ceil(file.files[0].size / 1024) + " KiB)"; };
  file.addEventListener("change", show);
  ["dragenter", "dragover"].forEach(e => drop.addEventListener(e, ev => { ev.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach(e => drop.addEventListener(e, ev => { ev.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", ev => { if (ev.dataTransfer.files.length) { file.files = ev.dataTransfer.files; show(); } });
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const data = new FormData(form);
    const name = data.get("campaign");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/campaigns");
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    bar.hidden = false; error.hidden = true;
    xhr.upload.onprogress = e => { if (e.lengthComputable) { bar.value = 100 * e.loaded / e.total; status.textContent = say("uploading", { pct: Math.round(bar.value) }); } };
    let poll = null;
    xhr.upload.onload = () => {
      status.textContent = say("uploaded"); bar.removeAttribute("value");
      // The import runs on the server: show its count while the request waits.
      poll = setInterval(() => {
        fetch("/api/v1/campaigns/" + encodeURIComponent(name) + "/import").then(r => r.ok ? r.json() : null).then(p => {
          if (p) status.textContent = say("importing", { rows: num(p.rows), rejected: num(p.rejected) });
        }, () => {});
      }, 700);
    };
    xhr.onloadend = () => { if (poll) clearInterval(poll); };
    xhr.onload = () => {
      if (xhr.status === 201) { window.location = "/campaigns/" + encodeURIComponent(name) + "/check"; return; }
      let msg = say("refused", { status: xhr.status });
      // The server's words in this page's language, else its English.
      try { const j = JSON.parse(xhr.responseText); msg = (j.messages || {})[document.documentElement.lang] || j.error || msg; } catch (_) {}
      error.textContent = msg; error.hidden = false; bar.hidden = true; status.textContent = "";
    };
    xhr.onerror = () => { error.textContent = say("offline"); error.hidden = false; bar.hidden = true; };
    xhr.send(data);
  });
}

function fmtEta(s) {
  if (s == null) return "";
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function setupLive() {
  const root = document.getElementById("campaign");
  if (!root || !window.EventSource) return;
  let wasRunning = root.dataset.status === "running" || root.dataset.runningHere === "1";
  const set = (id, v) => { const el = document.getElementById(id); if (el) el.textContent = v; };
  const es = new EventSource(root.dataset.events);
  es.addEventListener("progress", ev => {
    const d = JSON.parse(ev.data);
    const running = !!(d.live && d.live.running);
    if (running) {
      set("live", say("run_progress", { settled: num(d.live.settled), total: num(d.live.total), per_sec: d.live.per_sec }) +
        (d.live.eta_secs != null ? " · " + say("eta", { eta: fmtEta(d.live.eta_secs) }) : ""));
      wasRunning = true;
    }
    const s = d.status;
    if (!s) return;
    const k = s.counts;
    set("count-sent", num(k.sent)); set("count-failed", num(k.failed)); set("count-rejected", num(k.rejected));
    set("count-in_doubt", num(k.in_doubt)); set("count-expired", num(k.expired));
    set("count-open", num(k.pending + k.token_ready + k.in_flight));
    const done = k.sent + k.failed + k.expired + k.skipped;
    const accepted = k.total - k.rejected;
    const fill = document.getElementById("progress-fill");
    if (fill && accepted) { fill.max = accepted; fill.value = done; }
    if (!running) set("live", say("done_of", { done: num(done), total: num(accepted) }));
    const badge = document.querySelector("#status-badge .badge");
    // A finished campaign that left rejected rows is not simply "finished":
    // the page (reloaded below) words it; the badge waits for it.
    const partial = s.status === "finished" && k.rejected > 0;
    if (badge && !partial) { badge.textContent = (WORDS.status && WORDS.status[s.status]) || s.status; badge.className = "badge badge-" + s.status; }
    // A scheduled campaign started (or its schedule went): show its run.
    if (root.dataset.status === "scheduled" && s.status !== "scheduled") { es.close(); window.location.reload(); return; }
    // The run ended: the buttons and reasons change, so reload.
    if (running || s.status === "running") wasRunning = true;
    else if (wasRunning) { es.close(); window.location.reload(); }
  });
}

document.addEventListener("DOMContentLoaded", () => { setupUpload(); setupLive(); });
