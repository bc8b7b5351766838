/**
 * sse-batcher browser client: subscribe to an sse-batcher stream and get every original event,
 * whether it arrived alone or inside an aggregate.
 *
 * Usage (a page served next to the dashboard; the module is at static/sse-batcher.js):
 *
 *   import { subscribe } from "./static/sse-batcher.js";
 *
 *   const sub = subscribe("events", {
 *     types: ["JOB_STARTED", "JOB_COMPLETED"],   // optional, filtered by the server
 *     source: "thumbnail",                       // optional, filtered by the server
 *     onEvent(event, msg) { console.log(msg.id, event.type, event.data.job_id); },
 *     onState(state) { document.title = `jobs (${state})`; },
 *   });
 *   // Aggregates arrive unrolled: one onEvent per original event, in order, each a full event
 *   // (type and source restored: aggregates say them once on the wire).
 *   // sub.lastEventId is the resume point; sub.close() stops for good.
 *   // With `snapshot: true` a fresh stream starts with the latest event of every open key: one
 *   // onEvent each, flagged `snapshot: true` (with its own `message_id`), then the live events.
 *
 * Why fetch and not EventSource: EventSource dispatches by event name and only fires `onmessage`
 * for unnamed events, so a client cannot listen to types it does not know in advance. This module
 * reads the stream with fetch() and parses it itself (WHATWG HTML "event stream" rules), and does
 * what EventSource would: reconnects with `Last-Event-ID`, honours `retry:`. It departs from
 * EventSource on purpose in three places:
 *   - reconnect delay is exponential with jitter (base = the server's `retry:` hint, cap 10 s),
 *     not a fixed interval, so a restarting server is not hit by every client at once;
 *   - a message whose id is not greater than the last delivered id is dropped, so a resume never
 *     delivers a duplicate; a HISTORY_TRUNCATED message resets that watermark to the first id the
 *     server still has (ids may restart after a server reset);
 *   - a stream silent for `idleTimeoutMs` (no message, no `: ping`) is treated as dead and
 *     reconnected, because a half-open TCP connection never reports an error.
 *
 * @module sse-batcher
 */

/** Types that are control messages, not original events: they reach onMessage only. */
const CONTROL_TYPES = new Set(["HISTORY_TRUNCATED"]);
/** The first message of a stream opened with `snapshot: true`. */
const SNAPSHOT_TYPE = "STATE_SNAPSHOT";

const DEFAULT_RETRY_MS = 1000;
const DEFAULT_MAX_DELAY_MS = 10000;
const DEFAULT_IDLE_TIMEOUT_MS = 45000;
/** HTTP statuses after which retrying cannot help: the stream stops ("closed"). */
const FATAL_STATUSES = new Set([400, 401, 403, 404, 405, 406, 410, 413, 414, 422]);

/**
 * @typedef {object} SSEMessage
 * @property {number|string|null} id  the message id (a number when it is an integer), or null
 * @property {string} type            the `event:` name ("message" when the server sent none)
 * @property {any} data               the `data:` payload parsed as JSON (null if it is not JSON)
 * @property {string} raw             the `data:` payload as received
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {string[]|string} [types]  only these original types (`?types=`, server-side filter)
 * @property {string} [source]          only this source (`?source=`, server-side filter)
 * @property {number|string} [lastEventId]  resume after this id (sent as `Last-Event-ID`)
 * @property {boolean} [snapshot]  start from the latest state (`?snapshot=1`): the STATE_SNAPSHOT
 *   message is unrolled into one onEvent per open key, each flagged `snapshot: true`; then live.
 *   A resume (after a reconnect) goes on from its id and gets no second snapshot.
 * @property {(event: object, msg: SSEMessage, index: number) => void} [onEvent]
 *   called once per original event, in order: each item of an aggregate's `events`, or the
 *   message data itself for a single event; `index` is the position inside the aggregate (0 for a
 *   single event). Control messages (HISTORY_TRUNCATED) are not events and do not reach it.
 * @property {(msg: SSEMessage) => void} [onMessage]  called once per SSE message, before onEvent
 * @property {(state: "connecting"|"open"|"reconnecting"|"closed", info: object) => void} [onState]
 *   info holds `attempt`, and where relevant `delayMs`, `status`, `error`, `reason`
 * @property {string} [token]           sent as `Authorization: Bearer <token>`
 * @property {number} [retryMs=1000]   base reconnect delay until the server sends `retry:`
 * @property {number} [maxDelayMs=10000] cap of the reconnect delay (unless `retry:` is larger)
 * @property {number} [idleTimeoutMs=45000] reconnect after this long without any byte; 0 = never
 * @property {typeof fetch} [fetch]     fetch implementation (tests)
 */

/**
 * @typedef {object} Subscription
 * @property {() => void} close            stop for good; safe to call twice
 * @property {number|string|null} lastEventId  id of the last delivered message (resume point)
 * @property {string} state                current state
 */

/**
 * Subscribe to an sse-batcher stream.
 *
 * @param {string} url  stream url, relative to the page (e.g. "events") or absolute
 * @param {SubscribeOptions} [options]
 * @returns {Subscription}
 */
export function subscribe(url, options = {}) {
  const {
    types,
    source,
    onEvent,
    onMessage,
    onState,
    token,
    snapshot,
    maxDelayMs = DEFAULT_MAX_DELAY_MS,
    idleTimeoutMs = DEFAULT_IDLE_TIMEOUT_MS,
  } = options;
  const fetchImpl = options.fetch || globalThis.fetch.bind(globalThis);

  let lastId = normaliseId(options.lastEventId);
  let state = "";
  let closed = false;
  let controller = null;
  let retryMs = options.retryMs > 0 ? options.retryMs : DEFAULT_RETRY_MS;
  let attempt = 0;
  let lastByteAt = 0;
  let wakeUp = null;
  let idleTimer = null;

  function setState(next, info = {}) {
    if (state === next && next !== "reconnecting") return;
    state = next;
    if (onState) safeCall(onState, next, { attempt, ...info });
  }

  function buildUrl() {
    const base = globalThis.location ? globalThis.location.href : "http://localhost/";
    const u = new URL(url, base);
    const typeList = Array.isArray(types) ? types.join(",") : types;
    if (typeList) u.searchParams.set("types", typeList);
    if (source) u.searchParams.set("source", source);
    if (lastId !== null && lastId !== "") u.searchParams.set("last_event_id", String(lastId));
    else u.searchParams.delete("last_event_id");
    if (snapshot && lastId === null) u.searchParams.set("snapshot", "1");
    else u.searchParams.delete("snapshot");
    return u.toString();
  }

  function deliver(message) {
    const data = message.data;
    if (message.type === "HISTORY_TRUNCATED" || (data && data.type === "HISTORY_TRUNCATED")) {
      // The server no longer has what we asked for (or was reset): take what it has from here.
      // With nothing stored (no first id), 0: every id from here is new, and a reconnect before
      // the next message asks for all of them rather than for the live stream only.
      const first = data ? normaliseId(data.first_available_id) : null;
      if (typeof first === "number") lastId = first - 1;
      else lastId = message.hasOwnId ? message.id : 0;
      if (onMessage) safeCall(onMessage, message);
      return;
    }
    if (message.type === SNAPSHOT_TYPE) {
      // The latest event of every open key, consistent with its id: live goes on after it.
      if (message.hasOwnId) lastId = message.id;
      if (onMessage) safeCall(onMessage, message);
      const events = data && Array.isArray(data.events) ? data.events : [];
      if (onEvent) for (let i = 0; i < events.length; i++) safeCall(onEvent, { ...events[i], snapshot: true }, message, i);
      return;
    }
    if (message.hasOwnId) {
      if (typeof message.id === "number" && typeof lastId === "number" && message.id <= lastId) {
        return; // duplicate after a resume
      }
      lastId = message.id;
    }
    if (onMessage) safeCall(onMessage, message);
    if (!onEvent || data === null || typeof data !== "object" || CONTROL_TYPES.has(message.type)) {
      return;
    }
    const events = unroll(data);
    for (let i = 0; i < events.length; i++) safeCall(onEvent, events[i], message, i);
  }

  const parser = new SSEParser({
    onMessage(raw) {
      let data = null;
      try {
        data = JSON.parse(raw.data);
      } catch {
        data = null;
      }
      deliver({
        id: normaliseId(raw.id),
        type: raw.type,
        data,
        raw: raw.data,
        hasOwnId: raw.hasOwnId,
      });
    },
    onRetry(ms) {
      retryMs = ms;
    },
  });

  function sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = null;
        resolve();
      }
      wakeUp = done;
    });
  }

  function nextDelay() {
    const cap = Math.max(maxDelayMs, retryMs);
    const exp = Math.min(cap, retryMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }

  async function connectOnce() {
    controller = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (lastId !== null && lastId !== "") headers["Last-Event-ID"] = String(lastId);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetchImpl(buildUrl(), {
      headers,
      cache: "no-store",
      credentials: "same-origin",
      signal: controller.signal,
    });
    if (response.status === 204) return { fatal: true, reason: "no content", status: 204 };
    if (!response.ok) {
      if (response.body) response.body.cancel().catch(() => {});
      const fatal = FATAL_STATUSES.has(response.status);
      return { fatal, reason: `HTTP ${response.status}`, status: response.status };
    }
    const contentType = response.headers.get("content-type") || "";
    if (!contentType.toLowerCase().startsWith("text/event-stream")) {
      if (response.body) response.body.cancel().catch(() => {});
      return { fatal: true, reason: `unexpected content type ${contentType}` };
    }
    attempt = 0;
    setState("open", { status: response.status });
    parser.reset();
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    lastByteAt = Date.now();
    for (;;) {
      const { value, done } = await reader.read();
      if (closed) return { fatal: true, reason: "closed" };
      if (done) break;
      lastByteAt = Date.now();
      parser.feed(decoder.decode(value, { stream: true }));
    }
    parser.feed(decoder.decode());
    return { fatal: false, reason: "stream ended" };
  }

  async function run() {
    setState("connecting");
    while (!closed) {
      let result;
      try {
        result = await connectOnce();
      } catch (error) {
        result = { fatal: false, reason: "network error", error };
      }
      controller = null;
      if (closed) break;
      if (result.fatal) {
        closed = true;
        setState("closed", result);
        break;
      }
      attempt += 1;
      const delayMs = nextDelay();
      setState("reconnecting", { ...result, delayMs });
      await sleep(delayMs);
    }
    stopIdleWatch();
  }

  function stopIdleWatch() {
    if (idleTimer !== null) clearInterval(idleTimer);
    idleTimer = null;
  }

  if (idleTimeoutMs > 0) {
    // One coarse timer instead of a reset per chunk: chunks can arrive thousands of times a second.
    idleTimer = setInterval(() => {
      if (controller && state === "open" && Date.now() - lastByteAt > idleTimeoutMs) {
        controller.abort();
      }
    }, Math.min(5000, idleTimeoutMs));
  }

  run();

  return {
    close() {
      if (closed) return;
      closed = true;
      stopIdleWatch();
      if (controller) controller.abort();
      if (wakeUp) wakeUp();
      setState("closed", { reason: "closed by client" });
    },
    get lastEventId() {
      return lastId;
    },
    get state() {
      return state;
    },
  };
}

/**
 * Incremental parser for `text/event-stream` (WHATWG HTML, "Event stream interpretation").
 * Feed it decoded text in chunks of any size; it calls `onMessage({id, type, data, hasOwnId})`
 * on each blank line that ends a message with at least one `data:` field, `onRetry(ms)` for a
 * valid `retry:` and `onComment(text)` for lines starting with ":".
 */
export class SSEParser {
  /**
   * @param {{onMessage?: Function, onRetry?: Function, onComment?: Function}} handlers
   */
  constructor(handlers = {}) {
    this._handlers = handlers;
    this._lastEventId = "";
    this.reset();
  }

  /** Forget a partial message (a new connection starts clean); keeps the last event id. */
  reset() {
    this._pending = "";
    this._skipLF = false;
    this._data = [];
    this._type = "";
    this._hasOwnId = false;
  }

  /** @param {string} text  the next decoded chunk */
  feed(text) {
    if (this._skipLF) {
      this._skipLF = false;
      if (text.charCodeAt(0) === 10) text = text.slice(1);
    }
    let pos = 0;
    let nextCR = text.indexOf("\r");
    let nextLF = text.indexOf("\n");
    while (nextCR !== -1 || nextLF !== -1) {
      let end;
      let after;
      if (nextCR === -1 || (nextLF !== -1 && nextLF < nextCR)) {
        end = nextLF;
        after = nextLF + 1;
      } else {
        end = nextCR;
        after = nextCR + 1;
        if (after === text.length) this._skipLF = true; // a "\n" may start the next chunk
        else if (text.charCodeAt(after) === 10) after += 1;
      }
      let line = text.slice(pos, end);
      if (this._pending) {
        line = this._pending + line;
        this._pending = "";
      }
      this._line(line);
      pos = after;
      if (nextCR !== -1 && nextCR < pos) nextCR = text.indexOf("\r", pos);
      if (nextLF !== -1 && nextLF < pos) nextLF = text.indexOf("\n", pos);
    }
    if (pos < text.length) this._pending += text.slice(pos);
  }

  _line(line) {
    if (line === "") {
      this._dispatch();
      return;
    }
    const colon = line.indexOf(":");
    if (colon === 0) {
      if (this._handlers.onComment) this._handlers.onComment(line.slice(1));
      return;
    }
    let field = line;
    let value = "";
    if (colon > 0) {
      field = line.slice(0, colon);
      value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1);
    }
    switch (field) {
      case "data":
        this._data.push(value);
        break;
      case "event":
        this._type = value;
        break;
      case "id":
        if (!value.includes("\0")) {
          this._lastEventId = value;
          this._hasOwnId = true;
        }
        break;
      case "retry":
        if (/^\d+$/.test(value) && this._handlers.onRetry) {
          this._handlers.onRetry(parseInt(value, 10));
        }
        break;
      default:
        break; // unknown fields are ignored, as the spec says
    }
  }

  _dispatch() {
    const data = this._data;
    const type = this._type;
    const hasOwnId = this._hasOwnId;
    this._data = [];
    this._type = "";
    this._hasOwnId = false;
    if (data.length === 0) return;
    if (this._handlers.onMessage) {
      this._handlers.onMessage({
        id: this._lastEventId,
        type: type || "message",
        data: data.length === 1 ? data[0] : data.join("\n"),
        hasOwnId,
      });
    }
  }
}

/**
 * Original events carried by one message's data, full: the `events` of an aggregate, else the data.
 *
 * Aggregates are compact on the wire: they say the original type (`event_type`) and the source
 * once, and each inner event keeps only `seq`, `ts` and `data` (plus `priority`/`key` when set).
 * This puts `type` and `source` back, so each event looks as it would have travelling alone.
 * Inner events that already carry a `type` (aggregates stored before compaction) are left as they are.
 *
 * @param {any} data  parsed `data:` payload
 * @returns {object[]}
 */
export function unroll(data) {
  if (data === null || typeof data !== "object") return [];
  if (Array.isArray(data.events)) {
    const { event_type: type, source } = data;
    return data.events.map((event) =>
      event !== null && typeof event === "object" && !("type" in event) ? { type, source, ...event } : event,
    );
  }
  if (CONTROL_TYPES.has(data.type)) return [];
  return [data];
}

function normaliseId(id) {
  if (id === undefined || id === null) return null;
  if (typeof id === "number") return Number.isFinite(id) ? id : null;
  const text = String(id);
  return /^\d+$/.test(text) && text.length < 16 ? Number(text) : text;
}

function safeCall(fn, ...args) {
  try {
    fn(...args);
  } catch (error) {
    // A failing callback must not kill the stream; report it like an uncaught error.
    if (typeof globalThis.reportError === "function") globalThis.reportError(error);
    else setTimeout(() => { throw error; });
  }
}
