/**
 * Thin wrapper around the vendored uPlot (window.uPlot, loaded by a classic <script> tag): dark
 * theme axes, width that follows the container, and the "Waiting for…" overlay. Resizes are
 * applied on the next render, never inside the ResizeObserver callback, so a resize never causes
 * another layout inside the observer ("ResizeObserver loop" warnings).
 *
 * The legend shows the values under the cursor while it is over the plot, and each series' latest
 * value otherwise (uPlot alone would show a row of dashes whenever the cursor is away).
 *
 * @module chart
 */

import { cssVar } from "./format.js";

/** Compact axis numbers: 1200 -> "1.2k". */
export function compact(value) {
  if (value === null || value === undefined) return "—";
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return `${+value.toFixed(abs < 10 ? 1 : 0)}`;
}

/** Time axis labels as local "HH:MM:SS" (uPlot's default adds a date row that crowds a 5-minute axis). */
function clock(seconds) {
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Per series, the index of its newest non-null value (series 0, the time, takes the last index),
 * or null for a series with nothing yet: what the legend shows while the cursor is away.
 * @param {Array<ArrayLike<number|null|undefined>>} data  aligned uPlot data
 * @returns {Array<number|null>}
 */
export function latestIndexes(data) {
  const xs = data[0] || [];
  const last = xs.length ? xs.length - 1 : null;
  const idxs = [last];
  for (let s = 1; s < data.length; s++) {
    const ys = data[s] || [];
    let i = Math.min(ys.length, xs.length) - 1;
    while (i >= 0 && (ys[i] === null || ys[i] === undefined)) i -= 1;
    idxs.push(i >= 0 ? i : null);
  }
  return idxs;
}

/**
 * @param {HTMLElement} container  element holding the chart and its `.chart-empty` overlay
 * @param {object} opts            uPlot options without width/height/axes
 * @param {{height?: number, onResize?: () => void}} [extra]
 */
export function createChart(container, opts, { height = 220, onResize } = {}) {
  const UPlot = globalThis.uPlot;
  const overlay = container.querySelector(".chart-empty");
  const muted = cssVar("--muted", "#a3afbd");
  const grid = cssVar("--grid", "#26303c");
  const axis = {
    stroke: muted,
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1 },
    font: "12px system-ui, sans-serif",
  };
  let plot = null;
  let nextWidth = 0;

  function width() {
    return Math.max(200, Math.floor(container.clientWidth));
  }

  if (typeof UPlot === "function") {
    // uPlot refreshes the legend, with dashes once the cursor has left, and then runs the
    // setCursor hook: that is where the latest values go back in.
    const showLatest = (u) => {
      if (u.cursor.idx === null || u.cursor.idx === undefined) u.setLegend({ idxs: latestIndexes(u.data) }, false);
    };
    const series = opts.series ? [...opts.series] : [{}];
    series[0] = { value: (u, v) => (v === null || v === undefined ? "—" : clock(v)), ...series[0] };
    const options = {
      width: width(),
      height,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      ...opts,
      series,
      hooks: { ...(opts.hooks || {}), setCursor: [showLatest, ...((opts.hooks && opts.hooks.setCursor) || [])] },
      axes: [
        { ...axis, space: 70, values: (u, vals) => vals.map(clock) },
        { ...axis, size: 52, values: (u, vals) => vals.map(compact) },
      ],
    };
    plot = new UPlot(options, opts.data || [[]], container);
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(() => {
        const w = width();
        if (plot && w !== plot.width) {
          nextWidth = w;
          if (onResize) onResize();
        }
      }).observe(container);
    }
  } else if (overlay) {
    overlay.textContent = "Chart library failed to load.";
  }

  return {
    /** @param {Array<Array<number|null>>} data  aligned uPlot data */
    setData(data) {
      if (!plot) return;
      plot.setData(data);
      // The cursor hook does not run when nothing moved; a chart nobody points at still moves on.
      if (plot.cursor.idx === null || plot.cursor.idx === undefined) {
        plot.setLegend({ idxs: latestIndexes(data) }, false);
      }
    },
    /** Apply the last resize asked for; call from the render loop. */
    applySize() {
      if (plot && nextWidth && nextWidth !== plot.width) {
        plot.setSize({ width: nextWidth, height });
      }
      nextWidth = 0;
    },
    /** Show or hide the empty-state overlay. */
    setEmpty(empty) {
      if (overlay && overlay.hidden === empty) overlay.hidden = !empty;
    },
    get plot() {
      return plot;
    },
  };
}

/** Shortest span the time axis shows, in seconds. */
const MIN_SPAN_SECONDS = 60;

/**
 * The x range of a streaming time chart: from its first point (at least one minute back) to
 * `end`, never more than `windowSeconds` wide.
 * @param {{data: number[][]}} u  the uPlot instance
 * @param {number} end  the newest time, in seconds
 * @param {number} windowSeconds  the widest span
 * @returns {[number, number]}
 */
export function visibleRange(u, end, windowSeconds) {
  const xs = u.data && u.data[0];
  const first = xs && xs.length ? xs[0] : end;
  const start = Math.max(end - windowSeconds, Math.min(first, end - MIN_SPAN_SECONDS));
  return [start, end];
}
