/**
 * Nodes panel: one table row per server process from /api/stats `nodes`: node id, events
 * in, messages out, open streams, follower lag (newest committed id minus the last id the node handed
 * to its streams) and whether its heartbeat is recent. The node that answered the last /api/stats
 * poll is marked "(here)".
 * Rows are keyed by node id and updated in place, in the server's order (newest first).
 *
 * @module panels/nodes
 */

import { DASH, el, fmtInt, setText } from "../format.js";

/**
 * @param {{root?: Document|Element}} [options]
 */
export function createNodesPanel({ root = document } = {}) {
  const body = root.querySelector("#nodes-table tbody");
  const emptyEl = root.querySelector("#nodes-empty");
  const countEl = root.querySelector("#nodes-count");
  /** @type {Map<string, HTMLTableRowElement>} */
  const rows = new Map();
  let nodes = null;
  let self = null;
  let dirty = false;

  function rowFor(id) {
    let row = rows.get(id);
    if (!row) {
      row = el("tr");
      row.dataset.node = id;
      const nameCell = el("th", "", id);
      nameCell.scope = "row";
      nameCell.title = id;
      // State second: on a phone the table scrolls sideways, and alive/gone must show unscrolled.
      const stateCell = el("td", "", "");
      stateCell.append(el("span", "pill", DASH));
      row.append(
        nameCell,
        stateCell,
        el("td", "num", DASH),
        el("td", "num", DASH),
        el("td", "num", DASH),
        el("td", "num", DASH),
      );
      rows.set(id, row);
    }
    return row;
  }

  return {
    ingestStats(stats) {
      nodes = stats && Array.isArray(stats.nodes) ? stats.nodes : null;
      self = stats && stats.node && typeof stats.node === "object" ? String(stats.node.id ?? "") : null;
      dirty = true;
    },

    render() {
      if (!dirty || !body) return false;
      dirty = false;
      const seen = new Set();
      let previous = null;
      let alive = 0;
      for (const n of nodes || []) {
        if (!n || typeof n !== "object") continue;
        const id = String(n.id ?? "?");
        if (seen.has(id)) continue;
        seen.add(id);
        const row = rowFor(id);
        const cells = row.children;
        setText(cells[0], id === self ? `${id} (here)` : id);
        setText(cells[2], fmtInt(n.events_in));
        setText(cells[3], fmtInt(n.messages_out));
        setText(cells[4], fmtInt(n.clients));
        setText(cells[5], fmtInt(n.lag));
        const pill = cells[1].firstChild;
        const state = n.alive === true ? "alive" : "gone";
        if (n.alive === true) alive += 1;
        setText(pill, state);
        // The breaker pill's colours: green for a live node, red for one gone quiet.
        pill.dataset.state = n.alive === true ? "closed" : "open";
        const expected = previous ? previous.nextSibling : body.firstChild;
        if (row !== expected) body.insertBefore(row, expected);
        previous = row;
      }
      for (const [id, row] of rows) {
        if (!seen.has(id)) {
          row.remove();
          rows.delete(id);
        }
      }
      if (emptyEl) emptyEl.hidden = seen.size > 0;
      if (countEl) setText(countEl, seen.size ? `${alive} alive of ${seen.size}` : "");
      return false;
    },
  };
}
