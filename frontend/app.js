/**
 * Dashboard wiring: one stream subscription, one /api/stats poller, one render scheduler.
 *
 * Data flows in through `ingest…` calls, which only update plain arrays and counters; the DOM is
 * touched only in `render(now)`, which the scheduler calls at most once per animation frame. A
 * panel's render returns true when it held work back (throttled) and wants another frame.
 *
 * Every url is relative (no leading slash) so the dashboard works when mounted under a prefix.
 * An optional subscribe token is taken from `?token=` once, kept in sessionStorage and removed from
 * the address bar, and sent as `Authorization: Bearer` on the stream and the API calls.
 *
 * @module app
 */

import { subscribe } from "./sse-batcher.js";
import { createAbPanel } from "./panels/ab.js";
import { createBatchSizePanel } from "./panels/batchsize.js";
import { createBurstPanel } from "./panels/burst.js";
import { createConnectionPanel } from "./panels/connection.js";
import { createDigestsPanel } from "./panels/digests.js";
import { createEventLogPanel } from "./panels/eventlog.js";
import { createJobsPanel } from "./panels/jobs.js";
import { createLatencyPanel } from "./panels/latency.js";
import { createLoadPanel } from "./panels/load.js";
import { createNodesPanel } from "./panels/nodes.js";
import { createThroughputPanel } from "./panels/throughput.js";
import { createTotalsPanel } from "./panels/totals.js";
import { createWorkersPanel } from "./panels/workers.js";

const STATS_URL = "api/stats";
const HISTORY_URL = "api/history";
const EVENTS_URL = "events";
const STATS_INTERVAL_MS = 1000;
const STATS_TIMEOUT_MS = 5000;
const TOKEN_KEY = "sse-batcher-token";

function readToken() {
  let token = null;
  try {
    const url = new URL(window.location.href);
    token = url.searchParams.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      url.searchParams.delete("token");
      history.replaceState(history.state, "", url.toString());
    } else {
      token = sessionStorage.getItem(TOKEN_KEY);
    }
  } catch {
    // Storage may be disabled; the token then lives only in this page.
  }
  return token || undefined;
}

function main() {
  const token = readToken();
  const authHeaders = () => (token ? { Authorization: `Bearer ${token}` } : {});

  let framePending = false;
  /** @type {{render: (now: number) => boolean}[]} */
  let panels = [];

  function frame(now) {
    framePending = false;
    let again = false;
    for (const panel of panels) {
      try {
        if (panel.render(now)) again = true;
      } catch (error) {
        // One broken panel must not freeze the others.
        reportError(error);
      }
    }
    if (again) requestRender();
  }

  function requestRender() {
    if (framePending) return;
    framePending = true;
    requestAnimationFrame(frame);
  }

  const connection = createConnectionPanel();
  const throughput = createThroughputPanel({ requestRender });
  const latency = createLatencyPanel({ requestRender });
  const batchsize = createBatchSizePanel({ requestRender });
  const load = createLoadPanel();
  const totals = createTotalsPanel();
  const workers = createWorkersPanel();
  const nodes = createNodesPanel();
  const digests = createDigestsPanel();
  const jobs = createJobsPanel({ requestRender });
  const log = createEventLogPanel({ requestRender });
  const burst = createBurstPanel({ headers: authHeaders, requestRender });
  const ab = createAbPanel();
  panels = [connection, totals, load, workers, nodes, digests, batchsize, throughput, latency, jobs, log, burst, ab];
  const statsConsumers = [throughput, latency, batchsize, load, totals, workers, nodes, digests, burst, ab];

  // With a snapshot, the stream starts with the latest event of every open key: the jobs panel
  // shows every job already running at once, not only the ones that happen to speak next.
  const subscription = subscribe(EVENTS_URL, {
    token,
    snapshot: true,
    onState(state, info) {
      connection.setState(state, info);
      requestRender();
    },
    onMessage(msg) {
      connection.ingestMessage(msg);
      if (msg.type === "STATE_SNAPSHOT") {
        requestRender();
        return; // the current state, not traffic: it counts for no throughput
      }
      const data = msg.data;
      let count = 0;
      if (data && typeof data === "object") {
        if (Array.isArray(data.events)) count = data.events.length;
        else if (msg.type !== "HISTORY_TRUNCATED") count = 1;
      }
      throughput.ingestMessage(count);
      if (msg.type === "HISTORY_TRUNCATED") log.ingestNotice(msg);
      requestRender();
    },
    onEvent(event, msg, index) {
      if (event.snapshot) {
        jobs.ingestEvent(event);
        return;
      }
      log.ingestEvent(event, msg, index);
      jobs.ingestEvent(event);
      batchsize.ingestEvent(event);
    },
  });
  window.addEventListener("pagehide", (e) => {
    if (!e.persisted) subscription.close();
  });

  let statsInFlight = false;
  async function pollStats() {
    if (statsInFlight) return; // never overlap: a slow server is not asked twice
    statsInFlight = true;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), STATS_TIMEOUT_MS);
    try {
      const response = await fetch(STATS_URL, {
        headers: { Accept: "application/json", ...authHeaders() },
        cache: "no-store",
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const stats = await response.json();
      if (!stats || typeof stats !== "object") throw new Error("not a JSON object");
      for (const panel of statsConsumers) {
        try {
          panel.ingestStats(stats);
        } catch (error) {
          reportError(error);
        }
      }
      connection.setStatsState("ok", "stats: live");
    } catch (error) {
      const reason = error && error.name === "AbortError" ? "timed out" : error.message || "error";
      connection.setStatsState("error", `stats: unavailable (${reason})`);
      burst.ingestStats(null);
    } finally {
      clearTimeout(timer);
      statsInFlight = false;
      requestRender();
    }
  }

  // The last five minutes the server kept, so the charts do not start empty on every load.
  async function loadHistory() {
    try {
      const response = await fetch(HISTORY_URL, {
        headers: { Accept: "application/json", ...authHeaders() },
        cache: "no-store",
      });
      if (!response.ok) return;
      const body = await response.json();
      const points = body && Array.isArray(body.points) ? body.points : [];
      throughput.seed(points);
      latency.seed(points);
      requestRender();
    } catch (error) {
      reportError(error);
    }
  }

  loadHistory();
  pollStats();
  setInterval(() => {
    pollStats();
    throughput.tick();
  }, STATS_INTERVAL_MS);
  requestRender();
}

function reportError(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else setTimeout(() => { throw error; });
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", main, { once: true });
} else {
  main();
}
