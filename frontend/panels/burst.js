/**
 * Demo burst panel: a number input and a button that POST `{"count": N}` to api/demo/burst.
 * The panel stays hidden unless the demo is on: the server says so in /api/stats (`demo.enabled`)
 * or, failing that key, a one-time probe `GET api/demo/burst` answers anything but 404 (the route
 * is POST-only, so a live demo answers 405). A 404 on submit hides the panel too.
 *
 * @module panels/burst
 */

import { setText } from "../format.js";

const MAX_COUNT = 1000000;

/**
 * @param {{root?: Document|Element, headers?: () => Record<string, string>, requestRender?: () => void}} [options]
 */
export function createBurstPanel({ root = document, headers = () => ({}), requestRender = () => {} } = {}) {
  const panel = root.querySelector("#panel-burst");
  const form = root.querySelector("#burst-form");
  const input = root.querySelector("#burst-count");
  const button = root.querySelector("#burst-button");
  const statusEl = root.querySelector("#burst-status");

  let decided = false;
  let probing = false;
  let available = false;
  let status = "";
  let busy = false;
  let dirty = false;

  function setAvailable(on) {
    decided = true;
    if (available !== on) {
      available = on;
      dirty = true;
      requestRender();
    }
  }

  async function probe() {
    try {
      const response = await fetch("api/demo/burst", { method: "GET", headers: headers(), cache: "no-store" });
      if (!decided) setAvailable(response.status !== 404);
    } catch {
      if (!decided) setAvailable(false);
    }
  }

  async function send(count) {
    busy = true;
    status = `Starting ${count} jobs…`;
    dirty = true;
    requestRender();
    try {
      const response = await fetch("api/demo/burst", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers() },
        body: JSON.stringify({ count }),
      });
      if (response.status === 404) {
        setAvailable(false);
        status = "";
      } else if (response.ok) {
        let requested = count;
        try {
          const body = await response.json();
          if (body && Number.isFinite(body.requested)) requested = body.requested;
        } catch {
          // A 202 without a JSON body is still a success.
        }
        status = `Started ${requested} jobs.`;
      } else {
        let reason = `HTTP ${response.status}`;
        try {
          const body = await response.json();
          if (body && body.error) reason = String(body.error);
        } catch {
          // Keep the status code as the reason.
        }
        status = `Burst refused: ${reason}`;
      }
    } catch {
      status = "Burst failed: server unreachable.";
    } finally {
      busy = false;
      dirty = true;
      requestRender();
    }
  }

  if (form) {
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (busy) return;
      const count = Number(input ? input.value : NaN);
      if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT) {
        status = `Enter a whole number from 1 to ${MAX_COUNT}.`;
        dirty = true;
        requestRender();
        if (input) input.setAttribute("aria-invalid", "true");
        return;
      }
      if (input) input.removeAttribute("aria-invalid");
      send(count);
    });
  }

  return {
    /**
     * A fresh /api/stats answer (or null when the poll failed). The first one decides whether
     * to probe.
     */
    ingestStats(stats) {
      const demo = stats ? stats.demo : undefined;
      if (demo !== undefined && demo !== null) {
        setAvailable(typeof demo === "object" ? demo.enabled !== false : Boolean(demo));
      } else if (!decided && !probing) {
        probing = true;
        probe();
      }
    },

    render() {
      if (!dirty) return false;
      dirty = false;
      if (panel) panel.hidden = !available;
      if (button) button.disabled = busy;
      setText(statusEl, status);
      return false;
    },
  };
}
