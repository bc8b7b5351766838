/**
 * Batch size panel: the batch size over the last five minutes (from /api/stats, polled every
 * second), a dot for every adjustment (BATCH_SIZE_ADJUSTED events from the stream, and
 * `sizing.history` from the stats so a page opened late still sees recent ones), the current size
 * and timeout, the strategy in charge (`sizing.strategy`; for `learned`, its phase and best-known
 * choice in the current arrival-rate band, from `sizing.strategy_state`), and flush counts by reason
 * (totals and the last 60 s, from `batcher.flushes` deltas, in the #flush-table card).
 *
 * Times on this chart are server timestamps (`ts` of the stats and of the events), so samples and
 * adjustment dots line up whatever the browser's clock says.
 *
 * @module panels/batchsize
 */

import { createChart, visibleRange } from "../chart.js";
import { DASH, cssVar, el, fmtInt, fmtSeconds, get, isNumber, setText } from "../format.js";

const WINDOW_SECONDS = 300;

const FLUSH_WINDOW_SECONDS = 60;
const KNOWN_REASONS = ["size", "timeout", "manual", "critical", "bypass", "shutdown"];
const MAX_MARKERS = 500;

/**
 * What a sizing reason means, in the dashboard's words. "saturated" is about batches, not the
 * machine: half or more of the recent flushes were full (size-triggered), whatever the CPU, so it
 * reads "batches filling" here; the load rule is "high_load".
 */
const REASON_WORDS = {
  saturated: "batches filling",
  high_load: "high load",
  backlog: "backlog",
  idle: "idle",
  steady: "steady",
};

/** A sizing reason in words; unknown reasons as they are, underscores as spaces. */
export function reasonWords(reason) {
  const text = String(reason);
  return REASON_WORDS[text] ?? text.replaceAll("_", " ");
}

/** Two timeouts in seconds with the fewest decimals (2 to 4) that show both exactly: "0.50 → 0.02 s". */
function timeoutChange(before, after) {
  const exact = (v, digits) => Math.abs(Number(v.toFixed(digits)) - v) < 1e-9;
  let digits = 2;
  while (digits < 4 && !(exact(before, digits) && exact(after, digits))) digits += 1;
  return `timeout ${before.toFixed(digits)} → ${after.toFixed(digits)} s`;
}

/**
 * What one adjustment changed, in words: "size 15 → 20", "timeout 0.50 → 0.02 s", or both, and
 * its reason. An adjustment of the timeout alone would otherwise read "15 → 15".
 *
 * @param {{oldSize?: any, newSize?: any, oldTimeout?: any, newTimeout?: any, reason?: any}} change
 * @returns {string}
 */
export function describeAdjustment({ oldSize, newSize, oldTimeout, newTimeout, reason }) {
  const parts = [];
  const sizeKnown = isNumber(oldSize) && isNumber(newSize);
  const timeoutChanged = isNumber(oldTimeout) && isNumber(newTimeout) && oldTimeout !== newTimeout;
  if (!sizeKnown) {
    if (isNumber(newSize)) parts.push(`size ? → ${newSize}`);
  } else if (oldSize !== newSize || !timeoutChanged) {
    parts.push(`size ${oldSize} → ${newSize}`);
  }
  if (timeoutChanged) parts.push(timeoutChange(oldTimeout, newTimeout));
  if (parts.length === 0) return DASH;
  return `${parts.join(", ")}${reason ? ` (${reasonWords(reason)})` : ""}`;
}

/**
 * One line on what the `learned` strategy knows: its phase and, in the band it is in now, the
 * best-known (size, timeout) with its reward in events per CPU-second. A dash for the others.
 */
function describeLearned(state) {
  if (!state || typeof state.phase !== "string") return DASH;
  const arms = Array.isArray(state.arms) ? state.arms.filter((a) => a && a.band === state.band) : [];
  const best = arms[0];
  const samples = `${fmtInt(state.samples)}/${fmtInt(state.min_samples)} samples`;
  if (!best) return `${state.phase}, ${samples}`;
  return `${state.phase}, ${samples}; best at ${String(state.band)}: ${fmtInt(best.size)} × ${fmtSeconds(
    best.timeout_seconds,
  )} (${fmtInt(best.reward)} ev/CPU-s)`;
}

/**
 * @param {{root?: Document|Element, requestRender: () => void}} options
 */
export function createBatchSizePanel({ root = document, requestRender }) {
  const container = root.querySelector("#chart-batchsize");
  const sizeEl = root.querySelector("#batch-size-current");
  const timeoutEl = root.querySelector("#batch-timeout-current");
  const modeEl = root.querySelector("#batch-sizing-mode");
  const lastChangeEl = root.querySelector("#batch-last-change");
  const learnedEl = root.querySelector("#batch-strategy-state");
  const flushBody = root.querySelector("#flush-table tbody");

  /** @type {{ts: number, size: number}[]} */
  const samples = [];
  /** @type {Map<string, {ts: number, newSize: number, oldSize: any, oldTimeout: any, newTimeout: any, reason: any}>} */
  const markers = new Map();
  /** @type {{ts: number, deltas: Record<string, number>}[]} */
  const flushDeltas = [];
  const flushRows = new Map();

  let previousFlushes = null;
  let flushTotals = {};
  let current = {
    size: undefined,
    timeout: undefined,
    dynamic: undefined,
    enabled: undefined,
    strategy: undefined,
    state: undefined,
  };
  let latestTs = Date.now() / 1000;
  let dirtyChart = false;
  let dirtyText = true;
  let lastChartAt = 0;

  const y = (u, v) => (v === null || v === undefined ? "—" : String(Math.round(v)));
  const chart = createChart(
    container,
    {
      scales: {
        // The axis grows with the data, from one minute up to the full window, so the first
        // minutes are not squeezed against the right edge.
        x: { time: true, range: (u) => visibleRange(u, latestTs, WINDOW_SECONDS) },
        y: { range: (u, min, max) => [0, Math.max(10, max * 1.15)] },
      },
      series: [
        {},
        {
          label: "batch size",
          stroke: cssVar("--accent", "#6cc6ff"),
          width: 2,
          spanGaps: true,
          paths: globalThis.uPlot && globalThis.uPlot.paths.stepped
            ? globalThis.uPlot.paths.stepped({ align: 1 })
            : undefined,
          points: { show: false },
          value: y,
        },
        {
          label: "adjustment",
          stroke: cssVar("--warn", "#f2c063"),
          fill: cssVar("--warn", "#f2c063"),
          paths: () => null,
          points: { show: true, size: 9, width: 1, fill: cssVar("--warn", "#f2c063") },
          value: y,
        },
      ],
      data: [[], [], []],
    },
    { onResize: requestRender },
  );

  /** @param {any} d  a BATCH_SIZE_ADJUSTED event's data, or a `sizing.history` entry */
  function addMarker(ts, d) {
    const newSize = d.new_size;
    if (!isNumber(ts) || !isNumber(newSize)) return;
    const key = `${ts.toFixed(3)}:${newSize}`;
    if (markers.has(key)) return;
    markers.set(key, {
      ts,
      newSize,
      oldSize: d.old_size,
      oldTimeout: d.old_timeout_seconds,
      newTimeout: d.new_timeout_seconds,
      reason: d.reason,
    });
    if (markers.size > MAX_MARKERS) markers.delete(markers.keys().next().value);
    dirtyChart = true;
    dirtyText = true;
  }

  function latestMarker() {
    let best = null;
    for (const m of markers.values()) if (!best || m.ts >= best.ts) best = m;
    return best;
  }

  function chartData() {
    const oldest = latestTs - WINDOW_SECONDS;
    const points = [];
    for (const s of samples) points.push([s.ts, s.size, null]);
    for (const m of markers.values()) if (m.ts >= oldest) points.push([m.ts, null, m.newSize]);
    points.sort((a, b) => a[0] - b[0]);
    const xs = new Array(points.length);
    const sizes = new Array(points.length);
    const marks = new Array(points.length);
    for (let i = 0; i < points.length; i++) {
      [xs[i], sizes[i], marks[i]] = points[i];
    }
    return [xs, sizes, marks];
  }

  function renderFlushes() {
    if (!flushBody) return;
    const recent = {};
    for (const entry of flushDeltas) {
      for (const [reason, n] of Object.entries(entry.deltas)) recent[reason] = (recent[reason] || 0) + n;
    }
    const reasons = [...KNOWN_REASONS];
    for (const reason of Object.keys(flushTotals)) if (!reasons.includes(reason)) reasons.push(reason);
    for (const reason of reasons) {
      let row = flushRows.get(reason);
      if (!row) {
        row = el("tr");
        row.dataset.reason = reason;
        row.append(el("td", "", reason), el("td", "num", DASH), el("td", "num", DASH));
        flushRows.set(reason, row);
        flushBody.append(row);
      }
      setText(row.children[1], fmtInt(flushTotals[reason]));
      setText(row.children[2], previousFlushes ? fmtInt(recent[reason] || 0) : DASH);
    }
  }

  return {
    /** A fresh /api/stats answer. */
    ingestStats(stats) {
      const ts = isNumber(stats && stats.ts) ? stats.ts : Date.now() / 1000;
      latestTs = Math.max(latestTs, ts);
      const size = get(stats, "sizing.batch_size") ?? get(stats, "batcher.batch_size");
      const timeout =
        get(stats, "sizing.batch_timeout_seconds") ?? get(stats, "batcher.batch_timeout_seconds");
      current = {
        size,
        timeout,
        dynamic: get(stats, "sizing.dynamic"),
        enabled: get(stats, "batcher.batching_enabled"),
        strategy: get(stats, "sizing.strategy"),
        state: get(stats, "sizing.strategy_state"),
      };
      if (isNumber(size)) {
        samples.push({ ts, size });
        while (samples.length && samples[0].ts < latestTs - WINDOW_SECONDS) samples.shift();
        dirtyChart = true;
      }
      const history = get(stats, "sizing.history");
      if (Array.isArray(history)) {
        for (const h of history) if (h && typeof h === "object") addMarker(h.ts, h);
      }
      const flushes = get(stats, "batcher.flushes");
      if (flushes && typeof flushes === "object") {
        const deltas = {};
        for (const [reason, total] of Object.entries(flushes)) {
          if (!isNumber(total)) continue;
          const before = previousFlushes ? previousFlushes[reason] : undefined;
          if (isNumber(before) && total >= before) deltas[reason] = total - before;
        }
        if (previousFlushes) flushDeltas.push({ ts, deltas });
        while (flushDeltas.length && flushDeltas[0].ts <= ts - FLUSH_WINDOW_SECONDS) flushDeltas.shift();
        previousFlushes = flushes;
        flushTotals = flushes;
      }
      dirtyText = true;
    },

    /** An original event from the stream; only BATCH_SIZE_ADJUSTED matters here. */
    ingestEvent(event) {
      if (event.type !== "BATCH_SIZE_ADJUSTED") return;
      const d = event.data || {};
      // The adjustment's own ts, as `sizing.history` has it, so the two never make two dots.
      const ts = isNumber(d.ts) ? d.ts : isNumber(event.ts) ? event.ts : Date.now() / 1000;
      addMarker(ts, d);
    },

    render(now) {
      chart.applySize();
      let again = false;
      if (dirtyChart) {
        if (now - lastChartAt >= 250) {
          dirtyChart = false;
          lastChartAt = now;
          const data = chartData();
          chart.setEmpty(data[0].length === 0);
          chart.setData(data);
        } else {
          again = true;
        }
      }
      if (dirtyText) {
        dirtyText = false;
        setText(sizeEl, fmtInt(current.size));
        setText(timeoutEl, fmtSeconds(current.timeout));
        let mode = DASH;
        if (current.enabled === false) mode = "batching off";
        else if (typeof current.strategy === "string") mode = current.strategy;
        else if (current.dynamic === true) mode = "dynamic";
        else if (current.dynamic === false) mode = "fixed";
        setText(modeEl, mode);
        setText(learnedEl, describeLearned(current.state));
        const last = latestMarker();
        setText(lastChangeEl, last ? describeAdjustment(last) : DASH);
        renderFlushes();
      }
      return again;
    },
  };
}
