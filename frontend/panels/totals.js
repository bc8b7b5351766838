/**
 * Totals panel: what batching achieved since the server started, from /api/stats `batcher`
 * (and `hub.clients`). Saved percentage = events_saved / events_emitted.
 *
 * @module panels/totals
 */

import { DASH, fmtInt, get, isNumber, setText } from "../format.js";

/**
 * @param {{root?: Document|Element}} [options]
 */
export function createTotalsPanel({ root = document } = {}) {
  const q = (sel) => root.querySelector(sel);
  const fields = [
    [q("#total-events"), "batcher.events_emitted"],
    [q("#total-batched"), "batcher.events_batched"],
    [q("#total-saved"), "batcher.events_saved"],
    [q("#total-batches"), "batcher.batches_created"],
    [q("#total-stored"), "batcher.messages_stored"],
    [q("#total-dead"), "batcher.dead_lettered_batches"],
    [q("#total-buffer"), "batcher.buffer_depth"],
    [q("#total-clients"), "hub.clients"],
  ];
  const pctEl = q("#total-saved-pct");
  let stats = null;
  let dirty = false;

  return {
    ingestStats(next) {
      stats = next;
      dirty = true;
    },

    render() {
      if (!dirty) return false;
      dirty = false;
      for (const [node, path] of fields) setText(node, fmtInt(get(stats, path)));
      const saved = get(stats, "batcher.events_saved");
      const emitted = get(stats, "batcher.events_emitted");
      const pct =
        isNumber(saved) && isNumber(emitted) && emitted > 0
          ? `${((saved / emitted) * 100).toFixed(1)} %`
          : DASH;
      setText(pctEl, pct);
      return false;
    },
  };
}
