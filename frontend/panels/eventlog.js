/**
 * Event log panel: the latest 200 original events, newest first, filterable by type (select) and
 * source (text, substring match). Each row expands to the event's JSON in a <pre>. An event that
 * arrived inside an aggregate carries an "aggregate of N" badge.
 *
 * Ingest is O(1) per event (a ring-buffer write, plus a second ring when a filter is set so rare
 * matches are not pushed out by other traffic). The DOM holds at most 200 rows, reused in place and
 * refreshed at most every 100 ms. Event text reaches the page only through textContent.
 *
 * @module panels/eventlog
 */

import { el, fmtClock, fmtInt, setText } from "../format.js";

const SHOWN = 200;
const KEPT = 1000;
const MIN_RENDER_INTERVAL_MS = 100;
const MAX_OPTIONS = 200;
const MAX_EXPANDED = 50;
const SUMMARY_CHARS = 160;

class Ring {
  constructor(capacity) {
    this.capacity = capacity;
    this.items = new Array(capacity);
    this.next = 0;
    this.size = 0;
  }

  push(item) {
    this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size += 1;
  }

  clear() {
    this.items = new Array(this.capacity);
    this.next = 0;
    this.size = 0;
  }

  /** Up to `limit` items, newest first, that pass `keep`. */
  newest(limit, keep) {
    const out = [];
    for (let i = 1; i <= this.size && out.length < limit; i++) {
      const item = this.items[(this.next - i + this.capacity) % this.capacity];
      if (!keep || keep(item)) out.push(item);
    }
    return out;
  }
}

function summarise(data) {
  if (data === null || data === undefined) return "";
  if (typeof data !== "object") return String(data).slice(0, SUMMARY_CHARS);
  let text = "";
  for (const [key, value] of Object.entries(data)) {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    text += `${text ? "  " : ""}${key}=${shown}`;
    if (text.length >= SUMMARY_CHARS) break;
  }
  return text.length > SUMMARY_CHARS ? `${text.slice(0, SUMMARY_CHARS - 1)}…` : text;
}

/**
 * @param {{root?: Document|Element, requestRender: () => void}} options
 */
export function createEventLogPanel({ root = document, requestRender }) {
  const list = root.querySelector("#log");
  const emptyEl = root.querySelector("#log-empty");
  const typeSelect = root.querySelector("#filter-type");
  const sourceInput = root.querySelector("#filter-source");
  const sourceList = root.querySelector("#filter-source-list");
  const pauseButton = root.querySelector("#log-pause");
  const statusEl = root.querySelector("#log-status");

  const all = new Ring(KEPT);
  const matched = new Ring(SHOWN);
  const types = new Set();
  const sources = new Set();
  /** @type {Set<string>} keys of expanded rows, oldest first */
  const expanded = new Set();
  /** @type {HTMLLIElement[]} */
  const pool = [];
  const entryOf = new WeakMap();

  let filterType = "";
  let filterSource = "";
  let total = 0;
  let sincePause = 0;
  let paused = false;
  let optionsDirty = false;
  let dirty = true;
  let lastRenderAt = -Infinity;

  function filtering() {
    return filterType !== "" || filterSource !== "";
  }

  function matches(entry) {
    if (filterType && entry.type !== filterType) return false;
    if (filterSource && !entry.source.toLowerCase().includes(filterSource)) return false;
    return true;
  }

  function add(entry) {
    all.push(entry);
    if (filtering() && matches(entry)) matched.push(entry);
    total += 1;
    if (paused) sincePause += 1;
    if (!types.has(entry.type) && types.size < MAX_OPTIONS) {
      types.add(entry.type);
      optionsDirty = true;
    }
    if (entry.source && !sources.has(entry.source) && sources.size < MAX_OPTIONS) {
      sources.add(entry.source);
      optionsDirty = true;
    }
    dirty = true;
  }

  function applyFilter() {
    filterType = typeSelect ? typeSelect.value : "";
    filterSource = sourceInput ? sourceInput.value.trim().toLowerCase() : "";
    matched.clear();
    if (filtering()) {
      for (const entry of all.newest(SHOWN, matches).reverse()) matched.push(entry);
    }
    dirty = true;
    lastRenderAt = -Infinity;
    requestRender();
  }

  function renderOptions() {
    if (typeSelect) {
      const current = typeSelect.value;
      const sorted = [...types].sort();
      const have = [...typeSelect.options].slice(1).map((o) => o.value);
      if (have.join("\n") !== sorted.join("\n")) {
        while (typeSelect.options.length > 1) typeSelect.remove(1);
        for (const type of sorted) typeSelect.add(new Option(type, type));
        typeSelect.value = current;
      }
    }
    if (sourceList) {
      const sorted = [...sources].sort();
      sourceList.replaceChildren(...sorted.map((s) => new Option(s, s)));
    }
  }

  function makeRow() {
    const li = el("li", "log-row");
    const head = el("button", "log-head");
    head.type = "button";
    head.setAttribute("aria-expanded", "false");
    const meta = el("span", "log-meta");
    const badge = el("span", "log-badge");
    badge.hidden = true;
    meta.append(badge, el("span", "log-id"));
    head.append(
      el("span", "log-time"),
      el("span", "log-type"),
      el("span", "log-source"),
      el("span", "log-summary"),
      meta,
    );
    const pre = el("pre", "log-json");
    pre.hidden = true;
    li.append(head, pre);
    return li;
  }

  function fillRow(li, entry) {
    const { event, msgId, index, aggregateOf } = entry;
    const key = entry.key;
    entryOf.set(li, entry);
    li.dataset.key = key;
    li.dataset.id = msgId === null || msgId === undefined ? "" : String(msgId);
    li.dataset.type = entry.type;
    li.dataset.source = entry.source;
    li.dataset.index = String(index);
    if (event && event.priority === "critical") li.dataset.priority = "critical";
    else delete li.dataset.priority;
    const head = li.firstChild;
    const [time, type, source, summary, meta] = head.children;
    const [badge, id] = meta.children;
    setText(time, fmtClock(event && event.ts));
    setText(type, entry.type);
    setText(source, entry.source);
    setText(summary, summarise(event && event.data));
    setText(id, li.dataset.id ? `#${li.dataset.id}` : "");
    if (aggregateOf > 0) {
      setText(badge, `aggregate of ${aggregateOf}`);
      badge.hidden = false;
    } else {
      badge.hidden = true;
    }
    setExpanded(li, expanded.has(key));
  }

  function setExpanded(li, open) {
    const head = li.firstChild;
    const pre = li.lastChild;
    head.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      const entry = entryOf.get(li);
      setText(pre, JSON.stringify(entry ? entry.event : null, null, 2));
      pre.hidden = false;
    } else if (!pre.hidden) {
      pre.hidden = true;
      pre.textContent = "";
    }
  }

  if (typeSelect) typeSelect.addEventListener("change", applyFilter);
  if (sourceInput) sourceInput.addEventListener("input", applyFilter);
  if (pauseButton) {
    pauseButton.addEventListener("click", () => {
      paused = !paused;
      sincePause = 0;
      pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
      pauseButton.textContent = paused ? "Resume" : "Pause";
      dirty = true;
      lastRenderAt = -Infinity;
      requestRender();
    });
  }
  if (list) {
    list.addEventListener("click", (e) => {
      const head = e.target instanceof Element ? e.target.closest(".log-head") : null;
      if (!head) return;
      const li = head.parentElement;
      const key = li.dataset.key;
      const open = !expanded.has(key);
      if (open) {
        expanded.add(key);
        if (expanded.size > MAX_EXPANDED) expanded.delete(expanded.values().next().value);
      } else {
        expanded.delete(key);
      }
      setExpanded(li, open);
    });
  }

  return {
    /**
     * An original event from the stream.
     *
     * @param {object} event  the original event
     * @param {{id: any, data: any}} msg  the SSE message that carried it
     * @param {number} index  position inside the aggregate (0 for a single event)
     */
    ingestEvent(event, msg, index) {
      const aggregate = msg.data && Array.isArray(msg.data.events) ? msg.data.events.length : 0;
      add({
        event,
        msgId: msg.id,
        index,
        aggregateOf: aggregate,
        key: `${msg.id}:${index}`,
        type: String((event && event.type) ?? msg.type),
        source: String((event && event.source) ?? (msg.data && msg.data.source) ?? ""),
      });
    },

    /** A control message (HISTORY_TRUNCATED) shown as a row of its own. */
    ingestNotice(msg) {
      add({
        event: msg.data,
        msgId: msg.id,
        index: 0,
        aggregateOf: 0,
        key: `${msg.id}:notice:${total}`,
        type: msg.type,
        source: String((msg.data && msg.data.source) ?? "server"),
      });
    },

    render(now) {
      if (optionsDirty) {
        optionsDirty = false;
        renderOptions();
      }
      if (!dirty || !list) return false;
      if (paused) {
        setText(statusEl, `Paused: ${fmtInt(sincePause)} new events not shown`);
        dirty = false;
        return false;
      }
      if (now - lastRenderAt < MIN_RENDER_INTERVAL_MS) return true;
      lastRenderAt = now;
      dirty = false;
      const rows = filtering() ? matched.newest(SHOWN) : all.newest(SHOWN);
      while (pool.length < rows.length) pool.push(makeRow());
      for (let i = 0; i < rows.length; i++) {
        const li = pool[i];
        if (li.dataset.key !== rows[i].key) fillRow(li, rows[i]);
        if (li.parentNode !== list || (i > 0 ? pool[i - 1].nextSibling : list.firstChild) !== li) {
          list.insertBefore(li, i > 0 ? pool[i - 1].nextSibling : list.firstChild);
        }
      }
      for (let i = rows.length; i < pool.length; i++) {
        if (pool[i].parentNode) pool[i].remove();
      }
      if (emptyEl) {
        emptyEl.hidden = rows.length > 0;
        setText(emptyEl, total === 0 ? "Waiting for events…" : "No events match the filter.");
      }
      setText(
        statusEl,
        total === 0 ? "" : `${fmtInt(rows.length)} shown of ${fmtInt(total)} received`,
      );
      return false;
    },
  };
}
