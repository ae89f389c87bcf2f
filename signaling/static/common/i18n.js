// The page's UI language and its translations, as embedded by the server
// ({{i18n}} in the page template: <script type="application/json" id="i18n-catalog">).
// Shared by every page: import { t, lang, localized } from "/static/common/i18n.js".

const element = document.getElementById("i18n-catalog");
const embedded = element ? JSON.parse(element.textContent) : {};

/** The UI language of this page ("en", "fr" or "ru"). */
export const lang = embedded.lang || document.documentElement.lang || "en";

/** Every UI language the server offers. */
export const languages = embedded.languages || ["en"];

const messages = embedded.messages || {};

/**
 * The translation of `key`, with `{name}` placeholders replaced by `params.name`.
 * An unknown key is returned as it is, so a missing translation is visible, not fatal.
 */
export function t(key, params = {}) {
  const text = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole,
  );
}

/** True when the catalog has `key`. */
export function has(key) {
  return Object.prototype.hasOwnProperty.call(messages, key);
}

/**
 * A text of the program in the page language: program texts are objects per UI
 * language ({en, fr, ru}) with English always present; plain strings pass through.
 */
export function localized(value, language = lang) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  return value[language] ?? value.en ?? Object.values(value)[0] ?? "";
}

/** A date and time in the page language, in `timeZone` (default: the visitor's). */
export function formatDateTime(date, timeZone = undefined) {
  return new Intl.DateTimeFormat(lang, {
    weekday: "long",
    year: "numeric",
    month: "long",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone,
    timeZoneName: "long",
  }).format(date);
}

/** The visitor's IANA time zone, as the browser knows it. */
export function visitorTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}
