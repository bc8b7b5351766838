/**
 * Digests panel: the digest rules from /api/stats `digests`, each with its open windows
 * (source, group, events so far, and when the window closes). Hidden when the server has no digest
 * rules. Rows are rebuilt from the server's list, soonest to close first; text only via textContent.
 *
 * @module panels/digests
 */

import { DASH, el, fmtInt, setText } from "../format.js";

/** A window length as "5 min", "1 h", "24 h" or "90 s". */
function fmtLength(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return DASH;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** Time left until `ts` (epoch seconds) from `now`, as "in 4 min 10 s", "in 2 h 5 min" or "closing". */
function fmtCloses(ts, now) {
  if (typeof ts !== "number" || !Number.isFinite(ts)) return DASH;
  const left = Math.round(ts - now);
  if (left <= 0) return "closing";
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = left % 60;
  if (h) return `in ${h} h ${m} min`;
  if (m) return `in ${m} min ${s} s`;
  return `in ${s} s`;
}

function describe(rule) {
  const parts = [fmtLength(rule.digest_seconds), `max ${fmtInt(rule.max_items)} ${rule.keep ?? ""}`.trim()];
  if (rule.group_by) parts.push(`by ${rule.group_by}`);
  if (rule.align === "first") parts.push("from first event");
  if (rule.live === false) parts.push("not live");
  return parts.join(" · ");
}

/**
 * @param {{root?: Document|Element, now?: () => number}} [options]
 */
export function createDigestsPanel({ root = document, now = () => Date.now() / 1000 } = {}) {
  const panel = root.querySelector("#panel-digests");
  const body = root.querySelector("#digests-table tbody");
  const emptyEl = root.querySelector("#digests-empty");
  const countEl = root.querySelector("#digests-count");
  let digests = null;
  let dirty = false;

  function row(cells) {
    const tr = el("tr");
    cells.forEach(([text, className], i) => {
      const cell = el(i === 0 ? "th" : "td", className || "", text);
      if (i === 0) cell.scope = "row";
      tr.append(cell);
    });
    return tr;
  }

  return {
    ingestStats(stats) {
      digests = stats && stats.digests && typeof stats.digests === "object" ? stats.digests : null;
      dirty = true;
    },

    render() {
      if (!dirty || !body) return false;
      dirty = false;
      const enabled = Boolean(digests && digests.enabled === true);
      if (panel) panel.hidden = !enabled;
      if (!enabled) return false;
      const rules = Array.isArray(digests.rules) ? digests.rules : [];
      const t = now();
      const rows = [];
      let open = 0;
      for (const rule of rules) {
        if (!rule || typeof rule !== "object") continue;
        const name = String(rule.type ?? "?");
        const windows = Array.isArray(rule.windows) ? rule.windows : [];
        if (!windows.length) {
          rows.push(row([[name], [describe(rule)], [DASH], [DASH], ["0", "num"], ["no open window"]]));
        }
        for (const w of windows) {
          if (!w || typeof w !== "object") continue;
          open += 1;
          rows.push(
            row([
              [name],
              [describe(rule)],
              [String(w.source ?? DASH)],
              [w.group ? String(w.group) : DASH],
              [fmtInt(w.count), "num"],
              [fmtCloses(w.closes_at, t)],
            ]),
          );
        }
      }
      body.replaceChildren(...rows);
      if (emptyEl) emptyEl.hidden = rules.length > 0;
      if (countEl) setText(countEl, `${fmtInt(rules.length)} rules, ${fmtInt(open)} open windows`);
      return false;
    },
  };
}
