/**
 * Nodes panel: one table row per server process from /api/stats `nodes` (issue 9): node id, events
 * in, messages out, open streams, follower lag (newest committed id minus the last id the node handed
 * to its streams) and whether its heartbeat is recent. The node answering this page is marked.
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
      row.append(
        nameCell,
        el("td", "num", DASH),
        el("td", "num", DASH),
        el("td", "num", DASH),
        el("td", "num", DASH),
        el("td", "", ""),
      );
      row.lastChild.append(el("span", "pill", DASH));
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
        setText(cells[0], id === self ? `${id} (this page)` : id);
        setText(cells[1], fmtInt(n.events_in));
        setText(cells[2], fmtInt(n.messages_out));
        setText(cells[3], fmtInt(n.clients));
        setText(cells[4], fmtInt(n.lag));
        const pill = cells[5].firstChild;
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
