/**
 * Percentiles of an interval from two snapshots of a cumulative server histogram.
 *
 * /api/stats histograms (`latency.delivery`, `latency.commit`) are `{bounds, counts, total, count}`
 * since the server started: `counts[i]` observations <= `bounds[i]`, the last count above every
 * bound. What happened between two polls is the per-bucket difference; a quantile inside a bucket
 * is interpolated linearly between its bounds, as Prometheus' histogram_quantile does, so a value
 * is never more precise than the buckets allow. No DOM here: node's test runner imports it.
 *
 * @module histogram
 */

/**
 * @typedef {{bounds: number[], counts: number[], total: number, count: number}} HistogramSnapshot
 */

/** @param {any} h */
function valid(h) {
  return (
    h !== null &&
    typeof h === "object" &&
    Array.isArray(h.bounds) &&
    Array.isArray(h.counts) &&
    h.counts.length === h.bounds.length + 1
  );
}

/**
 * The per-bucket counts observed between `before` and `after`, or null when they cannot be
 * compared (missing, other buckets, or a counter went back: the server restarted).
 *
 * @param {HistogramSnapshot|null|undefined} before
 * @param {HistogramSnapshot|null|undefined} after
 * @returns {number[]|null}
 */
export function histogramDelta(before, after) {
  if (!valid(before) || !valid(after) || before.bounds.length !== after.bounds.length) return null;
  for (let i = 0; i < after.bounds.length; i++) if (before.bounds[i] !== after.bounds[i]) return null;
  const delta = new Array(after.counts.length);
  for (let i = 0; i < after.counts.length; i++) {
    const d = after.counts[i] - before.counts[i];
    if (!(d >= 0)) return null;
    delta[i] = d;
  }
  return delta;
}

/**
 * The `q` quantile (0..1) of per-bucket `counts` over `bounds`, or null when there are none.
 * Above the last bound there is no upper edge: the last bound is returned (a floor, not a guess).
 *
 * @param {number[]} bounds
 * @param {number[]} counts  per-bucket, `bounds.length + 1` of them
 * @param {number} q
 * @returns {number|null}
 */
export function quantile(bounds, counts, q) {
  let n = 0;
  for (const c of counts) n += c;
  if (n <= 0) return null;
  const rank = q * n;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (c > 0 && seen + c >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1];
      const upper = bounds[i];
      return lower + (upper - lower) * Math.max(0, Math.min(1, (rank - seen) / c));
    }
    seen += c;
  }
  return bounds[bounds.length - 1];
}
