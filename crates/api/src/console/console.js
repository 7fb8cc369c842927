// Warden console: live approvals inbox (SSE) and the session replay stepper. Loaded from
// /console/static under CSP default-src 'self'; no inline script anywhere.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const inbox = document.getElementById("inbox");
  if (inbox && window.EventSource) {
    let first = true;
    let stale = false;
    const refresh = async () => {
      // Never wipe a reason someone is typing: refresh once the fields are empty again.
      const typing = Array.from(inbox.querySelectorAll("input[type=text]")).some((i) => i.value);
      if (typing) { stale = true; return; }
      stale = false;
      const r = await fetch("/console/approvals/list", { credentials: "same-origin" });
      if (r.ok) inbox.innerHTML = await r.text();
    };
    const events = new EventSource("/console/events");
    events.addEventListener("approvals", (e) => {
      // The first event describes the state the page was rendered with, unless it changed
      // in between.
      const rendered = inbox.querySelectorAll(".request").length;
      if (first && String(rendered) === e.data) { first = false; return; }
      first = false;
      refresh();
    });
    setInterval(() => { if (stale) refresh(); }, 2000);
  }

  const steps = Array.from(document.querySelectorAll("#steps .step"));
  if (steps.length) {
    let current = 0;
    let timer = null;
    const position = document.getElementById("position");
    const show = (i) => {
      current = Math.max(0, Math.min(steps.length - 1, i));
      steps.forEach((s, j) => {
        s.classList.toggle("hidden", j > current);
        s.classList.toggle("current", j === current);
      });
      position.textContent = `step ${current + 1} of ${steps.length}`;
      steps[current].scrollIntoView({ block: "nearest" });
    };
    const stop = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      document.getElementById("play").textContent = "▶ Play";
    };
    const playFrom = (i) => {
      show(i);
      if (current >= steps.length - 1) return stop();
      const speed = Number(document.getElementById("speed").value) || 1;
      const wait = (Number(steps[current + 1].dataset.at) - Number(steps[current].dataset.at)) / 1000 / speed;
      timer = setTimeout(() => playFrom(current + 1), Math.min(Math.max(wait, 0), 10000));
    };
    document.getElementById("prev").addEventListener("click", () => { stop(); show(current - 1); });
    document.getElementById("next").addEventListener("click", () => { stop(); show(current + 1); });
    document.getElementById("all").addEventListener("click", () => { stop(); show(steps.length - 1); });
    document.getElementById("play").addEventListener("click", (e) => {
      if (timer) return stop();
      e.target.textContent = "❚❚ Pause";
      playFrom(current >= steps.length - 1 ? 0 : current);
    });
    show(0);
  }
});
