/**
 * Workers panel: one table row per worker from /api/stats `workers` (name, batching on/off, events,
 * jobs running/done/failed). Rows are keyed by worker name and updated in place.
 *
 * @module panels/workers
 */

import { DASH, el, fmtInt, setText } from "../format.js";

/**
 * @param {{root?: Document|Element}} [options]
 */
export function createWorkersPanel({ root = document } = {}) {
  const body = root.querySelector("#workers-table tbody");
  const emptyEl = root.querySelector("#workers-empty");
  /** @type {Map<string, HTMLTableRowElement>} */
  const rows = new Map();
  let workers = null;
  let dirty = false;

  function rowFor(name) {
    let row = rows.get(name);
    if (!row) {
      row = el("tr");
      row.dataset.worker = name;
      const nameCell = el("th", "", name);
      nameCell.scope = "row";
      row.append(
        nameCell,
        el("td", "batching", DASH),
        el("td", "num", DASH),
        el("td", "num", DASH),
        el("td", "num", DASH),
        el("td", "num", DASH),
      );
      rows.set(name, row);
    }
    return row;
  }

  return {
    ingestStats(stats) {
      const list = stats && Array.isArray(stats.workers) ? stats.workers : null;
      workers = list;
      dirty = true;
    },

    render() {
      if (!dirty || !body) return false;
      dirty = false;
      const seen = new Set();
      let previous = null;
      for (const w of workers || []) {
        if (!w || typeof w !== "object") continue;
        const name = String(w.name ?? "?");
        if (seen.has(name)) continue;
        seen.add(name);
        const row = rowFor(name);
        const cells = row.children;
        const batching = w.use_batching === true ? "on" : w.use_batching === false ? "off" : DASH;
        setText(cells[1], batching);
        cells[1].className = `batching ${batching === "on" ? "on" : "off"}`;
        setText(cells[2], fmtInt(w.events));
        setText(cells[3], fmtInt(w.jobs_running));
        setText(cells[4], fmtInt(w.jobs_done));
        setText(cells[5], fmtInt(w.jobs_failed));
        // Keep the server's order, moving a row only when it is out of place.
        const expected = previous ? previous.nextSibling : body.firstChild;
        if (row !== expected) body.insertBefore(row, expected);
        previous = row;
      }
      for (const [name, row] of rows) {
        if (!seen.has(name)) {
          row.remove();
          rows.delete(name);
        }
      }
      if (emptyEl) emptyEl.hidden = seen.size > 0;
      return false;
    },
  };
}
