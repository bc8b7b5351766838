/**
 * Running jobs panel, derived from the stream: JOB_STARTED adds a job (data.job_id, source),
 * JOB_PROGRESS sets data.percent (0..100) and data.step, JOB_COMPLETED / JOB_FAILED fade the job
 * out and then remove it. At most 50 jobs are shown, running ones first (oldest started first, as
 * they finish soonest); at most 2,000 are tracked, the oldest dropped first, so a lost
 * JOB_COMPLETED cannot grow memory. The dashboard subscribes with a snapshot, so the jobs already
 * running when the page opens arrive first (each job's latest event), then the live ones.
 *
 * @module panels/jobs
 */

import { el, isNumber, setText } from "../format.js";

const MAX_SHOWN = 50;
const MAX_TRACKED = 2000;
const FADE_MS = 1200;
const MIN_RENDER_INTERVAL_MS = 250;

/**
 * @param {{root?: Document|Element, requestRender: () => void}} options
 */
export function createJobsPanel({ root = document, requestRender }) {
  const list = root.querySelector("#jobs");
  const emptyEl = root.querySelector("#jobs-empty");
  const countEl = root.querySelector("#jobs-count");

  /** @type {Map<string, {jobId: string, source: string, percent: number|null, step: string, state: string, endedAt: number}>} */
  const jobs = new Map();
  /** @type {HTMLLIElement[]} */
  const rows = [];
  let lastRenderAt = -Infinity;
  let seenJobEvent = false;
  let dirty = false;
  let fadeTimer = null;

  function keyOf(event) {
    const d = event.data;
    if (!d || typeof d !== "object" || d.job_id === undefined || d.job_id === null) return null;
    return `${event.source ?? ""}\u0000${String(d.job_id)}`;
  }

  function percentOf(d, fallback) {
    if (isNumber(d.percent)) return Math.min(100, Math.max(0, d.percent));
    if (isNumber(d.progress)) return Math.min(100, Math.max(0, d.progress <= 1 ? d.progress * 100 : d.progress));
    return fallback;
  }

  function scheduleFade() {
    if (fadeTimer !== null) return;
    fadeTimer = setTimeout(() => {
      fadeTimer = null;
      dirty = true;
      requestRender();
    }, FADE_MS + 50);
  }

  /** Rows are created once and reused by position: at thousands of jobs a second, creating and
   * removing nodes per job costs far more layout than rewriting a few texts. */
  function rowAt(i) {
    while (rows.length <= i) {
      const li = el("li", "job");
      const name = el("span", "job-name");
      name.append(el("strong"), " ", el("span", "job-source"));
      const bar = el("span", "job-bar");
      bar.setAttribute("role", "progressbar");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      li.append(name, el("span", "job-pct"), bar, el("span", "job-step"));
      rows.push(li);
    }
    return rows[i];
  }

  function fillRow(li, key, job) {
    const [name, pct, bar, step] = li.children;
    const percent = job.percent;
    const transform = `scaleX(${((percent ?? 0) / 100).toFixed(3)})`;
    if (li.dataset.key !== key) {
      li.dataset.key = key;
      li.dataset.jobId = job.jobId;
      li.dataset.source = job.source;
      setText(name.firstChild, `#${job.jobId}`);
      setText(name.lastChild, job.source);
      bar.setAttribute("aria-label", `job ${job.jobId} progress`);
      // A row taken over by another job gets a new bar already at that job's progress: the old one
      // would slide there from the previous job's, and a bar moving back reads as a job going back.
      const fresh = el("span", "job-bar-fill");
      fresh.style.transform = transform;
      bar.replaceChildren(fresh);
    }
    setText(pct, isNumber(percent) ? `${Math.round(percent)} %` : "…");
    const fill = bar.firstChild;
    if (fill.style.transform !== transform) fill.style.transform = transform;
    const now = String(Math.round(percent ?? 0));
    if (bar.getAttribute("aria-valuenow") !== now) bar.setAttribute("aria-valuenow", now);
    setText(step, job.step);
    if (li.dataset.state !== job.state) li.dataset.state = job.state;
  }

  return {
    /** An original event from the stream. */
    ingestEvent(event) {
      const type = event.type;
      if (type !== "JOB_STARTED" && type !== "JOB_PROGRESS" && type !== "JOB_COMPLETED" && type !== "JOB_FAILED") {
        return;
      }
      const key = keyOf(event);
      if (key === null) return;
      const d = event.data;
      seenJobEvent = true;
      let job = jobs.get(key);
      if (type === "JOB_STARTED" || (type === "JOB_PROGRESS" && !job)) {
        if (!job) {
          job = { jobId: String(d.job_id), source: String(event.source ?? ""), percent: null, step: "", state: "running", endedAt: 0 };
          jobs.set(key, job);
          if (jobs.size > MAX_TRACKED) jobs.delete(jobs.keys().next().value);
        }
      }
      if (!job) return;
      if (type === "JOB_PROGRESS" || type === "JOB_STARTED") {
        job.percent = percentOf(d, job.percent ?? (type === "JOB_STARTED" ? 0 : null));
        if (typeof d.step === "string" || isNumber(d.step)) job.step = String(d.step);
      } else if (job.state === "running") {
        job.state = type === "JOB_COMPLETED" ? "completed" : "failed";
        if (type === "JOB_COMPLETED") job.percent = 100;
        if (type === "JOB_FAILED" && d.error !== undefined) job.step = `failed: ${String(d.error)}`;
        job.endedAt = Date.now();
        scheduleFade();
      }
      dirty = true;
    },

    render(now) {
      if (!dirty || !list) return false;
      if (now - lastRenderAt < MIN_RENDER_INTERVAL_MS) return true;
      lastRenderAt = now;
      dirty = false;
      const wall = Date.now();
      let fading = false;
      for (const [key, job] of jobs) {
        if (job.state !== "running") {
          if (wall - job.endedAt >= FADE_MS) jobs.delete(key);
          else fading = true;
        }
      }
      if (fading) scheduleFade();
      // Running jobs first (oldest started first); finished ones fade out in the slots left.
      let shown = 0;
      for (const wantRunning of [true, false]) {
        for (const [key, job] of jobs) {
          if (shown >= MAX_SHOWN) break;
          if ((job.state === "running") !== wantRunning) continue;
          const li = rowAt(shown);
          fillRow(li, key, job);
          if (li.parentNode !== list) list.append(li);
          shown += 1;
        }
      }
      for (let i = shown; i < rows.length; i++) {
        if (rows[i].parentNode) {
          rows[i].remove();
          delete rows[i].dataset.key;
        }
      }
      if (emptyEl) {
        emptyEl.hidden = shown > 0;
        setText(emptyEl, seenJobEvent ? "No jobs running." : "Waiting for events…");
      }
      // Counted from the entries themselves: the finished ones still fading out are not running.
      let runningNow = 0;
      for (const job of jobs.values()) if (job.state === "running") runningNow += 1;
      const finishing = jobs.size - runningNow;
      let text = runningNow > MAX_SHOWN ? `${runningNow} running, showing ${MAX_SHOWN}` : `${runningNow} running`;
      if (finishing > 0 && shown > Math.min(runningNow, MAX_SHOWN)) text += `, ${finishing} just finished`;
      setText(countEl, text);
      return false;
    },
  };
}
