/**
 * Latency panel: how old events are when the server first hands them to a client (p50 and p99 of
 * `latency.delivery`), and the p99 of a store commit (`latency.commit`), over the last five
 * minutes. Each point covers the interval between two /api/stats polls: the difference of the two
 * cumulative histograms, so it says what happened in that second, not since the server started.
 *
 * On page load, `seed` puts the server's last five minutes (`GET api/history`: `p50_ms`, `p99_ms`,
 * `commit_p99_ms` per second) in front of what the page measures itself.
 *
 * Times are server timestamps (`ts` of the stats), like the batch size chart. An interval without
 * events has no delivery point (a gap in the line): no events is not zero latency.
 *
 * @module panels/latency
 */

import { createChart, visibleRange } from "../chart.js";
import { DASH, cssVar, get, isNumber } from "../format.js";
import { histogramDelta, quantile } from "../histogram.js";

const WINDOW_SECONDS = 300;

/** Milliseconds, as the legend shows them. */
export function fmtMs(value) {
  if (!isNumber(value)) return DASH;
  if (value >= 100) return `${Math.round(value)} ms`;
  if (value >= 10) return `${value.toFixed(1)} ms`;
  return `${value.toFixed(2)} ms`;
}

/**
 * @param {{root?: Document|Element, requestRender: () => void}} options
 */
export function createLatencyPanel({ root = document, requestRender }) {
  const container = root.querySelector("#chart-latency");
  const xs = [];
  const p50 = [];
  const p99 = [];
  const commitP99 = [];
  let previous = null;
  let latestTs = Date.now() / 1000;
  let seenAny = false;
  let dirty = false;

  const line = { width: 2, points: { show: false } };
  const value = (u, v) => fmtMs(v);
  const chart = createChart(
    container,
    {
      scales: {
        x: { time: true, range: (u) => visibleRange(u, latestTs, WINDOW_SECONDS) },
        y: { range: (u, min, max) => [0, Math.max(10, max * 1.1)] },
      },
      series: [
        {},
        { ...line, label: "p50", stroke: cssVar("--accent", "#6cc6ff"), value },
        { ...line, label: "p99", stroke: cssVar("--warn", "#f2c063"), value },
        {
          ...line,
          label: "commit p99",
          stroke: cssVar("--accent-3", "#7fd8a4"),
          dash: [6, 4],
          value,
        },
      ],
      data: [xs, p50, p99, commitP99],
    },
    { onResize: requestRender },
  );

  /** `q` of what `key` recorded between the previous poll and `stats`, in ms, or null. */
  function intervalQuantile(stats, key, q) {
    const delta = histogramDelta(get(previous, key), get(stats, key));
    if (!delta) return null;
    const seconds = quantile(get(stats, key).bounds, delta, q);
    return seconds === null ? null : seconds * 1000;
  }

  const orNull = (v) => (isNumber(v) ? v : null);

  return {
    /** The server's points of the last five minutes (oldest first), put before this page's own. */
    seed(points) {
      const first = xs.length ? xs[0] : Infinity;
      const earlier = points.filter((p) => p && isNumber(p.ts) && p.ts < first);
      if (earlier.length === 0) return;
      xs.unshift(...earlier.map((p) => p.ts));
      p50.unshift(...earlier.map((p) => orNull(p.p50_ms)));
      p99.unshift(...earlier.map((p) => orNull(p.p99_ms)));
      commitP99.unshift(...earlier.map((p) => orNull(p.commit_p99_ms)));
      latestTs = Math.max(latestTs, earlier[earlier.length - 1].ts);
      if (earlier.some((p) => isNumber(p.p50_ms))) seenAny = true;
      dirty = true;
    },

    /** A fresh /api/stats answer. */
    ingestStats(stats) {
      if (!get(stats, "latency.delivery")) return; // a server without delivery latency in its stats
      const ts = isNumber(stats.ts) ? stats.ts : Date.now() / 1000;
      if (previous && ts > previous.ts) {
        const median = intervalQuantile(stats, "latency.delivery", 0.5);
        xs.push(ts);
        p50.push(median);
        p99.push(intervalQuantile(stats, "latency.delivery", 0.99));
        commitP99.push(intervalQuantile(stats, "latency.commit", 0.99));
        if (median !== null) seenAny = true;
        latestTs = Math.max(latestTs, ts);
        let drop = 0;
        while (drop < xs.length && xs[drop] < latestTs - WINDOW_SECONDS) drop += 1;
        if (drop > 0) {
          xs.splice(0, drop);
          p50.splice(0, drop);
          p99.splice(0, drop);
          commitP99.splice(0, drop);
        }
        dirty = true;
      }
      // Keep only what the next difference needs, not the whole answer.
      previous = { ts, latency: stats.latency };
    },

    render() {
      chart.applySize();
      if (!dirty) return false;
      dirty = false;
      chart.setEmpty(!seenAny);
      chart.setData([xs, p50, p99, commitP99]);
      return false;
    },
  };
}
