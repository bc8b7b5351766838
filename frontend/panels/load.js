/**
 * Load panel: host and process CPU, memory, load per core, event-loop lag, backlog (what the
 * dynamic sizing reads, `sizing.load`), and the store circuit breaker (`sizing.breaker`).
 *
 * @module panels/load
 */

import { fmtBytes, fmtInt, fmtNum, fmtPct, get, isNumber, setText } from "../format.js";

/**
 * @param {{root?: Document|Element}} [options]
 */
export function createLoadPanel({ root = document } = {}) {
  const q = (sel) => root.querySelector(sel);
  const cpuEl = q("#cpu");
  const cpuProcessEl = q("#cpu-process");
  const memEl = q("#mem");
  const rssEl = q("#rss");
  const loadEl = q("#load-per-core");
  const lagEl = q("#loop-lag");
  const backlogEl = q("#backlog");
  const breakerEl = q("#breaker-state");
  const meters = {
    cpu: q('[data-meter="cpu"]'),
    "cpu-process": q('[data-meter="cpu-process"]'),
    mem: q('[data-meter="mem"]'),
  };

  let stats = null;
  let dirty = false;

  function meter(name, percent) {
    const fill = meters[name];
    if (!fill) return;
    const p = isNumber(percent) ? Math.min(100, Math.max(0, percent)) : 0;
    const transform = `scaleX(${(p / 100).toFixed(3)})`;
    if (fill.style.transform !== transform) fill.style.transform = transform;
    const level = p >= 80 ? "high" : p >= 50 ? "mid" : "low";
    if (fill.dataset.level !== level) fill.dataset.level = level;
  }

  return {
    ingestStats(next) {
      stats = next;
      dirty = true;
    },

    render() {
      if (!dirty) return false;
      dirty = false;
      const cpu = get(stats, "sizing.load.cpu_percent");
      const processCpu =
        get(stats, "sizing.load.process_cpu_percent") ?? get(stats, "process.cpu_percent");
      const mem = get(stats, "sizing.load.memory_percent");
      setText(cpuEl, fmtPct(cpu));
      setText(cpuProcessEl, fmtPct(processCpu));
      setText(memEl, fmtPct(mem));
      meter("cpu", cpu);
      meter("cpu-process", processCpu);
      meter("mem", mem);
      setText(rssEl, fmtBytes(get(stats, "process.rss_bytes")));
      const perCore = get(stats, "sizing.load.load_per_core");
      setText(loadEl, isNumber(perCore) ? perCore.toFixed(2) : "—");
      setText(lagEl, fmtNum(get(stats, "sizing.load.loop_lag_ms"), " ms"));
      setText(backlogEl, fmtInt(get(stats, "sizing.load.backlog")));
      const breaker = get(stats, "sizing.breaker.state");
      const state = typeof breaker === "string" ? breaker : "unknown";
      setText(breakerEl, typeof breaker === "string" ? breaker.replace("_", "-") : "—");
      if (breakerEl && breakerEl.dataset.state !== state) breakerEl.dataset.state = state;
      const transitions = get(stats, "sizing.breaker.transitions");
      if (breakerEl) {
        breakerEl.title = isNumber(transitions) ? `${fmtInt(transitions)} transitions` : "";
      }
      return false;
    },
  };
}
