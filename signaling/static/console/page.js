// What every console page does the same way: read the token from the link,
// connect, show the connection status and the server's refusals, and load the
// program of the event.

import { Connection } from "./connection.js";
import { isSeatRefusal, seatPanel } from "./seat.js";
import { has, t } from "/static/common/i18n.js";
import { fetchEvent, pageToken } from "/static/common/api.js";

/**
 * Starts a console page.
 * @param {object} handlers  {onWelcome(welcome, again), onMessage(message), onSeat(seat)?}
 *   onSeat: the page's seat is "refused", "waiting" (asked to take over) or null (granted)
 * @returns {Connection|null}
 */
export function startConsole(handlers) {
  const status = document.getElementById("connection-status");
  const token = pageToken();
  if (!token) {
    socketStatus = { state: "refused", detail: t("console.no_token") };
    showStatus(status);
    return null;
  }
  const seat = seatPanel(() => connection, (state) => {
    // Waiting for the seat is not "connecting": the status line says what it waits for.
    if (state === "waiting") {
      socketStatus = { state: "waiting", detail: undefined };
      showStatus(status);
    }
    handlers.onSeat?.(state);
  });
  const connection = new Connection({
    token,
    onWelcome: handlers.onWelcome,
    onMessage: (message) => {
      if (message.type === "error") showError(message);
      else if (!seat.message(message)) handlers.onMessage(message);
    },
    onStatus: (state, code) => {
      // A refusal for the seat is said in full, with what to do, by the seat's notice:
      // the status line only names it (not "access refused": the link is fine).
      socketStatus =
        state === "refused" && isSeatRefusal(code)
          ? { state, words: t("console.status.seat_elsewhere") }
          : { state, detail: code ? errorText(code) : undefined };
      showStatus(status);
      seat.status(state, code);
      // Welcomed (again): what was refused before no longer holds (a page displaced,
      // then handed its link back).
      if (state === "online") hideError();
    },
  });
  // Started on the next task so that the page has its `connection` before the welcome.
  setTimeout(() => connection.start(), 0);
  return connection;
}

/** The whole program (sessions, speakers); retried until the server answers. */
export async function loadProgram() {
  for (let wait = 500; ; wait = Math.min(wait * 2, 8000)) {
    try {
      return await fetchEvent();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

// The WebSocket's status, and the page's media connections being restored after
// a network outage (the socket itself may well have stayed up).
// `words`: what the status line says instead of the state's own words.
let socketStatus = { state: "connecting", detail: undefined, words: undefined };
const restoringMedia = new Set();

/** Says on the status line whether the media connection `name` is being restored. */
export function mediaRestoring(name, restoring) {
  if (restoring) restoringMedia.add(name);
  else restoringMedia.delete(name);
  showStatus(document.getElementById("connection-status"));
}

function showStatus(element) {
  if (!element) return;
  const { detail } = socketStatus;
  const state = socketStatus.state === "online" && restoringMedia.size > 0 ? "restoring" : socketStatus.state;
  element.dataset.state = state;
  const own = state === socketStatus.state ? socketStatus.words : undefined;
  const words = own ?? t(`console.status.${state}`);
  element.textContent = detail ? `${words} ${detail}` : words;
  document.body.dataset.connection = state;
}

/**
 * The server's refusal `code` as a sentence in the page's language. The server's own
 * message is English for developers (and the console of the browser), never shown.
 */
export function errorText(code) {
  const key = `console.error.${code}`;
  return has(key) ? t(key) : t("console.error.generic");
}

/** A refusal from the server, shown to the person for a few seconds. */
export function showError(message) {
  if (message.message) console.info(`server refused (${message.code}): ${message.message}`);
  const box = document.getElementById("console-error");
  if (!box) return;
  box.textContent = errorText(message.code);
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => {
    box.hidden = true;
  }, 8000);
}

function hideError() {
  const box = document.getElementById("console-error");
  if (box) box.hidden = true;
  clearTimeout(showError.timer);
}

/** The time of day (HH:MM:SS) in the page language. */
export function formatClock(date, lang) {
  return date.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

/** mm:ss (or h:mm:ss) for a duration in seconds. */
export function formatDuration(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
}

/** Like common/dom.js's el(), plus on<event> handlers. */
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/**
 * Give `select` these [value, label] options. They are rebuilt only when they differ:
 * pages render on every state message, and rebuilding would disturb a list the
 * person has open.
 */
export function setOptions(select, options) {
  const signature = options.map(([value, label]) => `${value}:${label}`).join("|");
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  select.replaceChildren();
  for (const [value, label] of options) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    select.append(option);
  }
}
