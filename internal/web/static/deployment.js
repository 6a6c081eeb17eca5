// A deployment's page: appends the log lines as they are stored and keeps
// the status current, from the panel's event stream
// (/deployments/{id}/events). Lines are added as text, never as HTML. The
// page works without it: it shows the log of when it was loaded.
"use strict";
(() => {
  const log = document.getElementById("deploy-log");
  if (!log || !window.EventSource || log.dataset.terminal === "true") return;
  const status = document.getElementById("deploy-status");
  const empty = document.getElementById("deploy-log-empty");
  const errorLine = document.getElementById("deploy-error");
  const duration = document.getElementById("deploy-duration");
  const started = document.getElementById("deploy-started");
  const finished = document.getElementById("deploy-finished");
  const cancel = document.getElementById("deploy-cancel");
  const live = document.getElementById("deploy-live");
  const classes = { success: "st-online", failed: "st-error", cancelled: "st-offline" };

  const seconds = (n) => {
    const h = Math.floor(n / 3600), m = Math.floor((n % 3600) / 60), s = n % 60;
    return (h ? h + "h" : "") + (h || m ? m + "m" : "") + s + "s";
  };
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

  const stream = new EventSource(log.dataset.events);
  stream.addEventListener("message", (ev) => {
    // Keep following the end of the log if the reader is there.
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const line = document.createElement("span");
    line.className = "line";
    line.textContent = ev.data + "\n";
    log.appendChild(line);
    if (empty) empty.hidden = true;
    if (atEnd) log.scrollTop = log.scrollHeight;
  });
  stream.addEventListener("status", (ev) => {
    let d;
    try {
      d = JSON.parse(ev.data);
    } catch (_) {
      return;
    }
    status.textContent = d.status;
    status.dataset.status = d.status;
    status.className = "status " + (classes[d.status] || "st-pending");
    errorLine.textContent = d.error_message || "";
    errorLine.hidden = !d.error_message;
    if (d.started_at) started.textContent = when(d.started_at);
    if (d.finished_at) finished.textContent = when(d.finished_at);
    if (d.terminal && d.started_at) duration.textContent = seconds(d.duration_seconds);
    if (cancel && (d.terminal || d.cancel_requested)) cancel.remove();
    if (d.terminal) {
      // The stream ends here; without close the browser would reconnect.
      stream.close();
      if (live) live.textContent = "The deployment has ended.";
    }
  });
})();
