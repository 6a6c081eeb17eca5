// The bell: keeps the unread count in the header and the page title current
// from the panel's live stream (/notifications/stream), without reloading the
// page. Pages work without it; they show the count of when they were loaded.
"use strict";
(() => {
  const bell = document.getElementById("bell");
  if (!bell || !window.EventSource) return;
  const num = bell.querySelector(".bell-num");
  const badge = bell.querySelector(".bell-count");
  const title = document.title.replace(/^\(\d+\) /, "");
  let stream = null;
  let wait = 0;
  let timer = 0;

  const show = (n) => {
    bell.dataset.count = String(n);
    num.textContent = String(n);
    badge.hidden = n === 0;
    document.title = (n > 0 ? "(" + n + ") " : "") + title;
  };

  const close = () => {
    clearTimeout(timer);
    if (stream) {
      stream.close();
      stream = null;
    }
  };

  const open = () => {
    close();
    const s = new EventSource("/notifications/stream");
    stream = s;
    s.addEventListener("unread", (ev) => {
      wait = 0;
      let d;
      try {
        d = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (Number.isInteger(d.count) && d.count >= 0) show(d.count);
    });
    s.addEventListener("error", () => {
      // After a dropped connection the browser reconnects by itself. A
      // refusal (signed out, too many open tabs) closes the stream for good:
      // try again later, waiting longer each time.
      if (s !== stream || s.readyState !== EventSource.CLOSED) return;
      close();
      wait = Math.min(wait ? wait * 2 : 5000, 300000);
      timer = setTimeout(open, wait);
    });
  };

  // A tab in the background holds no connection: browsers allow only a few
  // per site. Coming back, the stream sends the count at once.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) close();
    else open();
  });
  window.addEventListener("pagehide", close);
  window.addEventListener("pageshow", (ev) => {
    if (ev.persisted && !document.hidden) open();
  });
  if (!document.hidden) open();
})();
