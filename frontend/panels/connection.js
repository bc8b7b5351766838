/**
 * Connection panel (header): stream state badge, last message id, message count, and the reason
 * of the last disconnect. The badge is an aria-live region, so a screen reader hears "Reconnecting…".
 *
 * @module panels/connection
 */

import { fmtInt, setText } from "../format.js";

const LABELS = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

/**
 * @param {{root?: Document|Element}} [options]
 */
export function createConnectionPanel({ root = document } = {}) {
  const stateEl = root.querySelector("#conn-state");
  const lastIdEl = root.querySelector("#last-id");
  const messagesEl = root.querySelector("#conn-messages");
  const detailEl = root.querySelector("#conn-detail");
  const noticeEl = root.querySelector("#conn-notice");
  const statsEl = root.querySelector("#stats-state");

  let state = "connecting";
  let detail = "";
  let lastId = null;
  let messages = 0;
  let notice = "";
  let stats = { state: "waiting", text: "stats: waiting…" };
  let dirty = true;

  return {
    /** @param {string} next  @param {object} info  from subscribe()'s onState */
    setState(next, info = {}) {
      state = next;
      if (next === "reconnecting") {
        const why = info.status ? `HTTP ${info.status}` : info.reason || "connection lost";
        const wait = typeof info.delayMs === "number" ? `, retry in ${(info.delayMs / 1000).toFixed(1)} s` : "";
        detail = `${why}${wait}`;
      } else if (next === "closed") {
        detail = info.reason || "";
      } else {
        detail = "";
      }
      dirty = true;
    },

    /** Called once per SSE message. */
    ingestMessage(msg) {
      messages += 1;
      if (msg.id !== null && msg.id !== undefined) lastId = msg.id;
      if (msg.type === "HISTORY_TRUNCATED") {
        const first = msg.data && msg.data.first_available_id;
        notice = `Part of the history is no longer stored: the stream resumed from id ${
          first === undefined ? "?" : String(first)
        }.`;
      }
      dirty = true;
    },

    /** @param {"ok"|"error"|"waiting"} statsState  @param {string} text */
    setStatsState(statsState, text) {
      if (stats.state === statsState && stats.text === text) return;
      stats = { state: statsState, text };
      dirty = true;
    },

    render() {
      if (!dirty) return false;
      dirty = false;
      setText(stateEl, LABELS[state] || state);
      if (stateEl && stateEl.dataset.state !== state) stateEl.dataset.state = state;
      setText(lastIdEl, lastId === null ? "—" : String(lastId));
      setText(messagesEl, fmtInt(messages));
      setText(detailEl, detail);
      if (noticeEl) {
        setText(noticeEl, notice);
        noticeEl.hidden = notice === "";
      }
      if (statsEl) {
        setText(statsEl, stats.text);
        if (statsEl.dataset.state !== stats.state) statsEl.dataset.state = stats.state;
      }
      return false;
    },
  };
}
