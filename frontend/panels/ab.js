/**
 * A/B panel: the two arms of a live A/B of sizing strategies side by side (from /api/stats
 * `ab.arms`, one entry per arm), the difference B − A of each figure, and whether both arms have
 * enough samples to call it. Hidden when the server runs no A/B (`ab.arms` empty).
 *
 * "Enough samples" is a floor, not a significance test: both arms need MIN_EVENTS committed
 * events and MIN_MESSAGES messages, so a p99 rests on more than a handful of batches.
 *
 * @module panels/ab
 */

import { DASH, el, fmtInt, fmtNum, get, isNumber, setText } from "../format.js";

const MIN_EVENTS = 1000;
const MIN_MESSAGES = 50;

/** [label, key, formatter] of each row; per-event figures are derived from the counts. */
const ROWS = [
  ["share of sources", "share", (v) => (isNumber(v) ? `${Math.round(v * 100)} %` : DASH)],
  ["sources", "sources", fmtInt],
  ["events", "events", fmtInt],
  ["messages", "messages", fmtInt],
  ["rows per event", "rows_per_event", (v) => (isNumber(v) ? v.toFixed(4) : DASH)],
  ["age at commit p50", "p50_ms", (v) => fmtNum(v, " ms")],
  ["age at commit p99", "p99_ms", (v) => fmtNum(v, " ms")],
  ["store write p99", "store_latency_p99_ms", (v) => fmtNum(v, " ms")],
];

function figures(arm) {
  const events = get(arm, "events");
  const rows = get(arm, "rows");
  return {
    ...arm,
    rows_per_event: isNumber(events) && isNumber(rows) && events > 0 ? rows / events : undefined,
  };
}

function difference(a, b, format) {
  if (!isNumber(a) || !isNumber(b)) return DASH;
  const delta = b - a;
  const sign = delta > 0 ? "+" : delta < 0 ? "−" : "±";
  const pct = a !== 0 ? ` (${sign}${Math.abs((delta / a) * 100).toFixed(0)} %)` : "";
  return `${sign}${format(Math.abs(delta))}${pct}`;
}

/**
 * @param {{root?: Document|Element}} [options]
 */
export function createAbPanel({ root = document } = {}) {
  const panel = root.querySelector("#panel-ab");
  const body = root.querySelector("#ab-table tbody");
  const headA = root.querySelector("#ab-arm-a");
  const headB = root.querySelector("#ab-arm-b");
  const verdictEl = root.querySelector("#ab-verdict");
  const rows = new Map();
  let arms = null;
  let dirty = false;

  return {
    ingestStats(stats) {
      const next = get(stats, "ab.arms");
      arms = Array.isArray(next) && next.length === 2 ? next.map(figures) : null;
      dirty = true;
    },

    render() {
      if (!dirty) return false;
      dirty = false;
      if (panel) panel.hidden = arms === null;
      if (arms === null || !body) return false;
      const [a, b] = arms;
      setText(headA, `A: ${String(a.strategy ?? "?")}`);
      setText(headB, `B: ${String(b.strategy ?? "?")}`);
      for (const [label, key, format] of ROWS) {
        let row = rows.get(key);
        if (!row) {
          row = el("tr");
          row.append(el("td", "", label), el("td", "num", DASH), el("td", "num", DASH), el("td", "num", DASH));
          rows.set(key, row);
          body.append(row);
        }
        setText(row.children[1], format(a[key]));
        setText(row.children[2], format(b[key]));
        setText(row.children[3], key === "share" || key === "sources" ? DASH : difference(a[key], b[key], format));
      }
      const enough = arms.every(
        (arm) => isNumber(arm.events) && arm.events >= MIN_EVENTS && isNumber(arm.messages) && arm.messages >= MIN_MESSAGES,
      );
      setText(
        verdictEl,
        enough
          ? "enough samples to compare"
          : `not enough samples yet: each arm needs ${fmtInt(MIN_EVENTS)} events and ${fmtInt(MIN_MESSAGES)} messages`,
      );
      return false;
    },
  };
}
