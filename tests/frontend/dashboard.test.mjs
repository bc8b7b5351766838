// The dashboard's pure helpers under node's test runner (node --test): no DOM, no browser.
import assert from "node:assert/strict";
import { test } from "node:test";

import { latestIndexes } from "../../frontend/chart.js";
import { histogramDelta, quantile } from "../../frontend/histogram.js";
import { describeAdjustment, reasonWords } from "../../frontend/panels/batchsize.js";
import { fmtMs } from "../../frontend/panels/latency.js";

test("an adjustment of the timeout alone says so instead of reading 15 → 15", () => {
  const change = { oldSize: 15, newSize: 15, oldTimeout: 0.5, newTimeout: 0.02, reason: "low_load" };
  assert.equal(describeAdjustment(change), "timeout 0.50 → 0.02 s (low load)");
});

test("an adjustment names the size, the timeout, or both", () => {
  assert.equal(describeAdjustment({ oldSize: 15, newSize: 20, oldTimeout: 0.2, newTimeout: 0.2 }), "size 15 → 20");
  assert.equal(
    describeAdjustment({ oldSize: 20, newSize: 10, oldTimeout: 0.2, newTimeout: 0.05, reason: "high_load" }),
    "size 20 → 10, timeout 0.20 → 0.05 s (high load)",
  );
  // Without timeouts (an older server) the size still reads; a missing old size is a question mark.
  assert.equal(describeAdjustment({ oldSize: 5, newSize: 8 }), "size 5 → 8");
  assert.equal(describeAdjustment({ newSize: 8 }), "size ? → 8");
  assert.equal(describeAdjustment({}), "—");
});

test("the batches-fill rule never reads as a saturated machine", () => {
  assert.equal(reasonWords("saturated"), "batches filling");
  assert.equal(
    describeAdjustment({ oldSize: 15, newSize: 20, oldTimeout: 0.2, newTimeout: 0.2, reason: "saturated" }),
    "size 15 → 20 (batches filling)",
  );
  assert.equal(reasonWords("something_new"), "something new");
});

test("small timeouts get the decimals that tell them apart", () => {
  assert.equal(
    describeAdjustment({ oldSize: 3, newSize: 3, oldTimeout: 0.005, newTimeout: 0.0025 }),
    "timeout 0.0050 → 0.0025 s",
  );
  assert.equal(describeAdjustment({ oldSize: 3, newSize: 3, oldTimeout: 0.2, newTimeout: 0.004 }), "timeout 0.200 → 0.004 s");
});

test("quantiles interpolate inside a bucket, and the overflow bucket reads as the last bound", () => {
  const bounds = [0.01, 0.1, 1];
  assert.equal(quantile(bounds, [0, 0, 0, 0], 0.5), null);
  assert.equal(quantile(bounds, [10, 0, 0, 0], 0.5), 0.005);
  // 100 observations: 50 in (0, 0.01], 40 in (0.01, 0.1], 10 above 1.
  const counts = [50, 40, 0, 10];
  assert.equal(quantile(bounds, counts, 0.5), 0.01);
  assert.ok(Math.abs(quantile(bounds, counts, 0.7) - 0.055) < 1e-12);
  assert.equal(quantile(bounds, counts, 0.99), 1);
});

test("the difference of two snapshots is what happened between them, or null when not comparable", () => {
  const before = { bounds: [0.01, 0.1], counts: [5, 1, 0], total: 0.1, count: 6 };
  const after = { bounds: [0.01, 0.1], counts: [7, 4, 1], total: 1.5, count: 12 };
  assert.deepEqual(histogramDelta(before, after), [2, 3, 1]);
  assert.equal(histogramDelta(after, before), null); // counters went back: the server restarted
  assert.equal(histogramDelta(before, { ...after, bounds: [0.01, 0.2] }), null);
  assert.equal(histogramDelta(undefined, after), null);
  assert.equal(histogramDelta(before, { bounds: [0.01, 0.1], counts: [1, 2] }), null);
});

test("the legend's latest values skip the gaps of each series", () => {
  const data = [
    [1, 2, 3, 4],
    [5, 6, null, null],
    [null, 7, null, 8],
    [null, null, null, null],
  ];
  assert.deepEqual(latestIndexes(data), [3, 1, 3, null]);
  assert.deepEqual(latestIndexes([[], []]), [null, null]);
});

test("milliseconds keep three significant figures", () => {
  assert.equal(fmtMs(243.4), "243 ms");
  assert.equal(fmtMs(24.84), "24.8 ms");
  assert.equal(fmtMs(2.5), "2.50 ms");
  assert.equal(fmtMs(null), "—");
});
