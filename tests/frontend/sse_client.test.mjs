// Behaviour of frontend/sse-batcher.js under node's test runner (node --test), with a fake fetch.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SSEParser, subscribe, unroll } from "../../frontend/sse-batcher.js";

function parseAll(chunks) {
  const out = { messages: [], retries: [], comments: [] };
  const parser = new SSEParser({
    onMessage: (m) => out.messages.push(m),
    onRetry: (ms) => out.retries.push(ms),
    onComment: (c) => out.comments.push(c),
  });
  for (const chunk of chunks) parser.feed(chunk);
  return out;
}

test("parser splits on LF, CRLF and CR, even across chunk boundaries", () => {
  const text = "id: 1\r\nevent: A\r\ndata: x\r\n\r\nid: 2\revent: B\rdata: y\r\rid: 3\nevent: C\ndata: z\n\n";
  const whole = parseAll([text]).messages;
  for (let size = 1; size <= 7; size++) {
    const chunks = [];
    for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
    assert.deepEqual(parseAll(chunks).messages, whole, `chunk size ${size}`);
  }
  assert.deepEqual(
    whole.map((m) => [m.id, m.type, m.data]),
    [["1", "A", "x"], ["2", "B", "y"], ["3", "C", "z"]],
  );
});

test("parser joins data lines, strips one space, ignores comments and unknown fields", () => {
  const { messages, comments, retries } = parseAll([
    ": ping\n\ndata:  two spaces\ndata:none\ndata\nfoo: bar\nretry: 1500\nretry: x\n\n",
  ]);
  assert.deepEqual(comments, [" ping"]);
  assert.deepEqual(retries, [1500]);
  assert.equal(messages.length, 1);
  assert.equal(messages[0].data, " two spaces\nnone\n");
  assert.equal(messages[0].type, "message");
  assert.equal(messages[0].hasOwnId, false);
});

test("parser dispatches nothing without data and drops a message cut off at the end", () => {
  const { messages } = parseAll(["event: A\nid: 9\n\ndata: partial"]);
  assert.equal(messages.length, 0);
});

test("an id containing NUL is ignored", () => {
  const { messages } = parseAll(["id: 5\ndata: a\n\nid: 6\u0000\ndata: b\n\n"]);
  assert.deepEqual(messages.map((m) => [m.id, m.hasOwnId]), [["5", true], ["5", false]]);
});

// The bytes batcher/pipeline/aggregate.py writes for the wire format's example (tests/batcher/pipeline/test_aggregate.py
// checks the Python side against the same string).
const WIRE_AGGREGATE =
  '{"type":"JOBS_BATCH_STARTED","event_type":"JOB_STARTED","source":"thumbnail","batch_count":3,' +
  '"job_ids":[123,124,125],"events":[{"seq":1007,"ts":1763870000.123,"data":{"job_id":123}},' +
  '{"seq":1008,"ts":1763870000.124,"data":{"job_id":124}},{"seq":1009,"ts":1763870000.125,"data":{"job_id":125}}]}';
const fullStarted = (seq, ts, jobId, extra = {}) => ({
  type: "JOB_STARTED", source: "thumbnail", seq, ts, data: { job_id: jobId }, ...extra,
});

test("unroll restores full events from a compact aggregate, exactly as they were published", () => {
  assert.deepEqual(unroll(JSON.parse(WIRE_AGGREGATE)), [
    fullStarted(1007, 1763870000.123, 123),
    fullStarted(1008, 1763870000.124, 124),
    fullStarted(1009, 1763870000.125, 125),
  ]);
  const withKey = { type: "T_BATCH", event_type: "T", source: "s", batch_count: 1, superseded: 1,
    events: [{ seq: 2, ts: 1, data: {}, key: "k" }] };
  assert.deepEqual(unroll(withKey), [{ type: "T", source: "s", seq: 2, ts: 1, data: {}, key: "k" }]);
});

test("unroll takes inner events that already carry their type as they are (rows from before compaction)", () => {
  const old = { type: "JOBS_BATCH_STARTED", source: "thumbnail", events: [fullStarted(1, 2, 3)] };
  assert.deepEqual(unroll(old), [fullStarted(1, 2, 3)]);
});

test("unroll returns the single event itself and nothing for control messages", () => {
  assert.deepEqual(unroll({ type: "JOB_STARTED" }), [{ type: "JOB_STARTED" }]);
  assert.deepEqual(unroll({ type: "HISTORY_TRUNCATED", first_available_id: 3 }), []);
  assert.deepEqual(unroll(null), []);
});

// A fake fetch answering each call from a list of scripted responses.
function fakeFetch(script) {
  const calls = [];
  const encoder = new TextEncoder();
  async function fetchImpl(url, init) {
    calls.push({ url, headers: { ...init.headers } });
    const next = script.shift();
    if (!next) return new Promise(() => {}); // hang: the test closes the subscription
    if (next instanceof Error) throw next;
    const { status = 200, body = "", contentType = "text/event-stream", keepOpen = false } = next;
    const stream = new ReadableStream({
      start(controller) {
        for (const part of Array.isArray(body) ? body : [body]) controller.enqueue(encoder.encode(part));
        if (!keepOpen) controller.close();
      },
    });
    return new Response(stream, { status, headers: { "content-type": contentType } });
  }
  return { fetchImpl, calls };
}

function collect(url, script, extra = {}) {
  const { fetchImpl, calls } = fakeFetch(script);
  const got = { events: [], messages: [], states: [] };
  let resolveClosed;
  const closed = new Promise((r) => (resolveClosed = r));
  const sub = subscribe(url, {
    fetch: fetchImpl,
    idleTimeoutMs: 0,
    onEvent: (e, m, i) => got.events.push([m.id, i, e.seq]),
    onMessage: (m) => got.messages.push([m.id, m.type]),
    onState: (s, info) => {
      got.states.push(s);
      if (s === "closed") resolveClosed(info);
    },
    ...extra,
  });
  return { sub, got, calls, closed };
}

const single = (id, seq) =>
  `id: ${id}\nevent: JOB_STARTED\ndata: ${JSON.stringify({ type: "JOB_STARTED", source: "s", seq, ts: 1, data: { job_id: seq } })}\n\n`;
const aggregate = (id, seqs) =>
  `id: ${id}\nevent: JOBS_BATCH_STARTED\ndata: ${JSON.stringify({
    type: "JOBS_BATCH_STARTED",
    event_type: "JOB_STARTED",
    source: "s",
    batch_count: seqs.length,
    events: seqs.map((seq) => ({ seq, ts: 1, data: { job_id: seq } })),
  })}\n\n`;

const until = async (check) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check(), "condition not reached");
};

test("events are unrolled in order, duplicates after a reconnect are dropped, Last-Event-ID is sent", async () => {
  const { sub, got, calls } = collect(
    "http://x/events",
    [
      { body: ["retry: 5\n\n", single(1, 10), aggregate(2, [11, 12, 13])] },
      { body: [aggregate(2, [11, 12, 13]), single(3, 14)] },
    ],
    { types: ["JOB_STARTED"], source: "s" },
  );
  await until(() => got.events.length === 5);
  sub.close();
  assert.deepEqual(got.events, [[1, 0, 10], [2, 0, 11], [2, 1, 12], [2, 2, 13], [3, 0, 14]]);
  assert.deepEqual(got.messages.map((m) => m[0]), [1, 2, 3]);
  assert.equal(calls[0].headers["Last-Event-ID"], undefined);
  assert.equal(calls[1].headers["Last-Event-ID"], "2");
  const second = new URL(calls[1].url);
  assert.equal(second.searchParams.get("last_event_id"), "2");
  assert.equal(second.searchParams.get("types"), "JOB_STARTED");
  assert.equal(second.searchParams.get("source"), "s");
  assert.equal(sub.lastEventId, 3);
  assert.deepEqual(got.states.slice(0, 4), ["connecting", "open", "reconnecting", "open"]);
  assert.equal(got.states.at(-1), "closed");
});

test("HISTORY_TRUNCATED resets the duplicate watermark to the first available id", async () => {
  const truncated = `id: 4\nevent: HISTORY_TRUNCATED\ndata: {"type":"HISTORY_TRUNCATED","first_available_id":5}\n\n`;
  const { sub, got } = collect("http://x/events", [{ body: [truncated, single(5, 50), single(6, 60)] }], {
    lastEventId: 900,
  });
  await until(() => got.events.length === 2);
  sub.close();
  assert.deepEqual(got.messages, [[4, "HISTORY_TRUNCATED"], [5, "JOB_STARTED"], [6, "JOB_STARTED"]]);
  assert.deepEqual(got.events.map((e) => e[2]), [50, 60]);
});

test("HISTORY_TRUNCATED with nothing stored makes a reconnect ask for everything (Last-Event-ID 0)", async () => {
  const truncated = `event: HISTORY_TRUNCATED\ndata: {"type":"HISTORY_TRUNCATED","first_available_id":null}\n\n`;
  const { sub, got, calls } = collect("http://x/events", [{ body: [truncated] }, { body: [single(1, 10)] }], {
    lastEventId: 900,
    retryMs: 5,
  });
  await until(() => got.events.length === 1);
  sub.close();
  assert.equal(calls[0].headers["Last-Event-ID"], "900");
  assert.equal(calls[1].headers["Last-Event-ID"], "0");
  assert.deepEqual(got.events, [[1, 0, 10]]);
});

test("a 401 closes the stream for good; a network error and a 503 are retried", async () => {
  const fatal = collect("http://x/events", [{ status: 401, body: "no" }]);
  const info = await fatal.closed;
  assert.equal(info.status, 401);
  assert.equal(fatal.calls.length, 1);

  const flaky = collect("http://x/events", [
    new TypeError("network down"),
    { status: 503, body: "busy" },
    { body: [single(1, 1)], keepOpen: true },
  ], { retryMs: 5 });
  await until(() => flaky.got.events.length === 1);
  flaky.sub.close();
  assert.equal(flaky.calls.length, 3);
});

test("the token goes in an Authorization header and a wrong content type is fatal", async () => {
  const { calls, closed } = collect("http://x/events", [{ body: "{}", contentType: "application/json" }], {
    token: "secret",
  });
  const info = await closed;
  assert.match(info.reason, /content type/);
  assert.equal(calls[0].headers.Authorization, "Bearer secret");
});

test("a throwing callback does not stop delivery", async () => {
  const errors = [];
  const saved = globalThis.reportError;
  globalThis.reportError = (e) => errors.push(e);
  try {
    let n = 0;
    const { sub, got } = collect("http://x/events", [{ body: [single(1, 1), single(2, 2)] }], {
      onMessage: () => {
        n += 1;
        if (n === 1) throw new Error("boom");
      },
    });
    await until(() => got.events.length === 2);
    sub.close();
    assert.equal(errors.length, 1);
  } finally {
    globalThis.reportError = saved;
  }
});

test("onEvent is handed full events from a compact aggregate, as if each had travelled alone", async () => {
  const { sub, got } = collect(
    "http://x/events",
    [{ body: [`id: 42\nevent: JOBS_BATCH_STARTED\ndata: ${WIRE_AGGREGATE}\n\n`], keepOpen: true }],
    { onEvent: (e, m, i) => got.events.push([m.id, i, e]) },
  );
  await until(() => got.events.length === 3);
  sub.close();
  const full = got.events.map((e) => e[2]);
  assert.deepEqual(got.events.map((e) => [e[0], e[1]]), [[42, 0], [42, 1], [42, 2]]);
  assert.deepEqual(full, unroll(JSON.parse(WIRE_AGGREGATE)));
  assert.deepEqual(full[1], fullStarted(1008, 1763870000.124, 124));
});

test("snapshot: true asks once, unrolls the state flagged snapshot, then resumes after its id", async () => {
  const state = {
    type: "STATE_SNAPSHOT",
    upto_id: 7,
    count: 2,
    events: [
      { type: "JOB_STARTED", source: "s", seq: 1, ts: 1, data: { job_id: 1 }, key: "1", message_id: 3 },
      { type: "JOB_PROGRESS", source: "s", seq: 4, ts: 1, data: { job_id: 2 }, key: "2", message_id: 7 },
    ],
  };
  const flagged = [];
  const { sub, got, calls } = collect(
    "http://x/events",
    [{ body: [`id: 7\nevent: STATE_SNAPSHOT\ndata: ${JSON.stringify(state)}\n\n`, single(8, 80)] }, { body: [single(9, 90)] }],
    { snapshot: true, onEvent: (e, m, i) => { got.events.push([m.id, i, e.seq]); flagged.push(e.snapshot === true); } },
  );
  await until(() => got.events.length === 4);
  sub.close();
  assert.deepEqual(got.events, [[7, 0, 1], [7, 1, 4], [8, 0, 80], [9, 0, 90]]);
  assert.deepEqual(flagged, [true, true, false, false]);
  assert.equal(new URL(calls[0].url).searchParams.get("snapshot"), "1");
  assert.equal(new URL(calls[1].url).searchParams.get("snapshot"), null); // a resume: no second snapshot
  assert.equal(calls[1].headers["Last-Event-ID"], "8");
});
