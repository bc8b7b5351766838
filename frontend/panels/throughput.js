/**
 * Throughput panel: events/s (original events, unrolled), SSE messages/s (both counted here from
 * the stream) and DB rows/s (from /api/stats deltas of batcher.messages_stored), one point per
 * second over the last five minutes.
 *
 * Per message the panel only adds to two counters; the chart gets new data at most once a second,
 * when a second is complete. On page load, `seed` puts the server's last five minutes
 * (`GET api/history`: events and messages handed to the hub, rows stored, per second) in front of
 * what the page counts itself.
 *
 * @module panels/throughput
 */

import { createChart, visibleRange } from "../chart.js";
import { cssVar, get, isNumber } from "../format.js";

const WINDOW_SECONDS = 300;


/**
 * @param {{root?: Document|Element, requestRender: () => void}} options
 */
export function createThroughputPanel({ root = document, requestRender }) {
  const container = root.querySelector("#chart-throughput");
  const xs = [];
  const eventsPerSecond = [];
  const messagesPerSecond = [];
  const rowsPerSecond = [];
  /** DB rate per client second, waiting for that second to close. */
  const openSecondRows = new Map();

  let currentSecond = 0;
  let partialBin = true;
  let currentEvents = 0;
  let currentMessages = 0;
  let seenAny = false;
  let dirty = false;
  let previousStored = null;

  function windowEnd() {
    return xs.length ? xs[xs.length - 1] : Math.floor(Date.now() / 1000);
  }

  const line = { width: 2, points: { show: false } };
  const format = (u, v) => (v === null || v === undefined ? "—" : `${Math.round(v)}/s`);
  const chart = createChart(
    container,
    {
      scales: {
        // A fixed sliding window, so the axis reads "last five minutes" even before data fills it.
        // The axis grows with the data, from one minute up to the full window, so the first
        // minutes are not squeezed against the right edge.
        x: { time: true, range: (u) => visibleRange(u, windowEnd(), WINDOW_SECONDS) },
        y: { range: (u, min, max) => [0, Math.max(5, max * 1.1)] },
      },
      series: [
        {},
        { ...line, label: "events/s", stroke: cssVar("--accent", "#6cc6ff"), value: format },
        { ...line, label: "messages/s", stroke: cssVar("--accent-2", "#c7a2ff"), value: format },
        {
          ...line,
          label: "DB rows/s",
          stroke: cssVar("--accent-3", "#7fd8a4"),
          dash: [6, 4],
          spanGaps: true,
          value: format,
        },
      ],
      data: [xs, eventsPerSecond, messagesPerSecond, rowsPerSecond],
    },
    { onResize: requestRender },
  );

  function roll(nowSecond) {
    if (currentSecond === 0) currentSecond = nowSecond;
    if (nowSecond <= currentSecond) return;
    if (nowSecond - currentSecond > WINDOW_SECONDS) {
      // Long pause (hidden tab, sleep): keep the last bin, skip the empty stretch.
      pushBin(currentSecond);
      currentSecond = nowSecond - 1;
    }
    while (currentSecond < nowSecond) {
      pushBin(currentSecond);
      currentSecond += 1;
    }
    const oldest = nowSecond - WINDOW_SECONDS;
    let drop = 0;
    while (drop < xs.length && xs[drop] < oldest) drop += 1;
    if (drop > 0) {
      xs.splice(0, drop);
      eventsPerSecond.splice(0, drop);
      messagesPerSecond.splice(0, drop);
      rowsPerSecond.splice(0, drop);
    }
    for (const second of openSecondRows.keys()) if (second < oldest) openSecondRows.delete(second);
    dirty = true;
  }

  function pushBin(second) {
    if (partialBin) {
      // The page opened part-way through this second: its count would read as a dip.
      partialBin = false;
      currentEvents = 0;
      currentMessages = 0;
      return;
    }
    xs.push(second);
    eventsPerSecond.push(currentEvents);
    messagesPerSecond.push(currentMessages);
    const rows = openSecondRows.get(second);
    rowsPerSecond.push(rows === undefined ? null : rows);
    openSecondRows.delete(second);
    currentEvents = 0;
    currentMessages = 0;
  }

  return {
    /**
     * The server's points of the last five minutes (`{ts, events, messages, rows}`, oldest first),
     * put before the seconds this page counted itself.
     */
    seed(points) {
      const first = xs.length ? xs[0] : Infinity;
      const oldest = Math.floor(Date.now() / 1000) - WINDOW_SECONDS;
      const earlier = points.filter((p) => p && isNumber(p.ts) && Math.floor(p.ts) < first && p.ts >= oldest);
      if (earlier.length === 0) return;
      xs.unshift(...earlier.map((p) => Math.floor(p.ts)));
      eventsPerSecond.unshift(...earlier.map((p) => (isNumber(p.events) ? p.events : 0)));
      messagesPerSecond.unshift(...earlier.map((p) => (isNumber(p.messages) ? p.messages : 0)));
      rowsPerSecond.unshift(...earlier.map((p) => (isNumber(p.rows) ? p.rows : null)));
      if (earlier.some((p) => p.events > 0 || p.messages > 0 || p.rows > 0)) seenAny = true;
      dirty = true;
    },

    /** One SSE message carrying `eventCount` original events. */
    ingestMessage(eventCount) {
      roll(Math.floor(Date.now() / 1000));
      currentMessages += 1;
      currentEvents += eventCount;
      if (eventCount > 0) seenAny = true;
    },

    /** A fresh /api/stats answer. */
    ingestStats(stats) {
      const stored = get(stats, "batcher.messages_stored");
      const ts = isNumber(stats && stats.ts) ? stats.ts : Date.now() / 1000;
      if (isNumber(stored)) {
        if (previousStored && ts > previousStored.ts && stored >= previousStored.value) {
          const rate = (stored - previousStored.value) / (ts - previousStored.ts);
          openSecondRows.set(Math.floor(Date.now() / 1000), rate);
          if (rate > 0) seenAny = true;
        }
        previousStored = { ts, value: stored };
      }
    },

    /** Called about once a second so idle seconds still show as zero. */
    tick() {
      roll(Math.floor(Date.now() / 1000));
      if (dirty) requestRender();
    },

    render() {
      chart.applySize();
      if (!dirty) return false;
      dirty = false;
      chart.setEmpty(!seenAny);
      chart.setData([xs, eventsPerSecond, messagesPerSecond, rowsPerSecond]);
      return false;
    },
  };
}
