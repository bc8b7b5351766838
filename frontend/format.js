/**
 * Small helpers shared by the panels: safe lookups into the stats JSON, number formatting, and
 * DOM writes that touch the page only when the text actually changes. Every value reaches the page
 * through textContent, never as markup.
 *
 * @module format
 */

/** Shown wherever a figure is missing. */
export const DASH = "—";

const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-US", {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});

/**
 * Value at `path` ("a.b.c") inside `obj`, or undefined when any step is missing.
 *
 * @param {any} obj
 * @param {string} path
 */
export function get(obj, path) {
  let value = obj;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = value[key];
  }
  return value;
}

/** @param {any} value */
export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** Integer with thousands separators, or a dash. */
export function fmtInt(value) {
  return isNumber(value) ? intFormat.format(value) : DASH;
}

/** Number with one decimal, an optional unit, or a dash. */
export function fmtNum(value, unit = "") {
  return isNumber(value) ? `${oneDecimal.format(value)}${unit}` : DASH;
}

/** A percentage already expressed in 0..100, or a dash. */
export function fmtPct(value) {
  return fmtNum(value, " %");
}

/** Bytes as KiB/MiB/GiB, or a dash. */
export function fmtBytes(value) {
  if (!isNumber(value)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${oneDecimal.format(n)} ${units[i]}`;
}

/** Seconds as "0.5 s" or "250 ms". */
export function fmtSeconds(value) {
  if (!isNumber(value)) return DASH;
  if (value < 1) return `${intFormat.format(value * 1000)} ms`;
  return `${oneDecimal.format(value)} s`;
}

/** Wall-clock time of a unix timestamp in seconds, "HH:MM:SS.mmm" local time. */
export function fmtClock(ts) {
  if (!isNumber(ts)) return DASH;
  const d = new Date(ts * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(
    d.getMilliseconds(),
    3,
  )}`;
}

/**
 * Set an element's text only when it changed (a write forces style work even when equal).
 *
 * @param {Element|null} el
 * @param {string} text
 */
export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

/**
 * Create an element with optional class and text.
 *
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Read a CSS custom property from :root (chart colours follow the stylesheet). */
export function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}
