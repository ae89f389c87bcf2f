// The seat of a speaker's or interpreter's link (docs/protocol.md, "One page per
// seat"): the link works on one page at a time, and never changes page silently.
// A page refused because another page has the link (or displaced by one) offers to
// take over; the page that has it is asked before it lets go, and so is the studio.
// While this page waits for their answer it says so, how long at most, and offers to
// give up; `document.body.dataset.seat` ("refused", "waiting") lets the page hide what
// would contradict it (console.css: a Join button while the seat is not granted).

import { t } from "/static/common/i18n.js";

// Refusals after which this page may ask to take the seat (back).
const TAKE_OVER_AFTER = new Set(["seat_taken", "claim_refused", "claim_expired", "displaced"]);

/** Whether the server's refusal `code` is about the seat (the link works on another page). */
export function isSeatRefusal(code) {
  return TAKE_OVER_AFTER.has(code);
}

/**
 * @param {() => import("./connection.js").Connection|null} getConnection
 * @param {(seat: string|null) => void} onSeat  told "refused", "waiting" or null (granted)
 * @returns {{status(state: string, code?: string): void, message(message: object): boolean}}
 */
export function seatPanel(getConnection, onSeat = () => {}) {
  let panel = null;
  let mode = null; // "newcomer" (refused or waiting) or "holder" (asked to let go)
  let countdown = null;

  function setSeat(seat) {
    if (seat) document.body.dataset.seat = seat;
    else delete document.body.dataset.seat;
    onSeat(seat);
  }

  function show(kind, text, buttons) {
    if (!panel) {
      panel = document.createElement("section");
      panel.id = "seat";
      panel.className = "seat-notice";
      panel.setAttribute("role", "alert");
      const anchor = document.getElementById("console-error");
      if (anchor) anchor.after(panel);
      else document.body.prepend(panel);
    }
    mode = kind;
    const words = document.createElement("p");
    words.textContent = text;
    const row = document.createElement("div");
    row.className = "seat-buttons";
    for (const [label, act, className] of buttons) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      if (className) button.className = className;
      button.addEventListener("click", act);
      row.append(button);
    }
    panel.replaceChildren(words, ...(buttons.length ? [row] : []));
    panel.hidden = false;
    return words;
  }

  function hide(kind) {
    if (panel && (kind === undefined || mode === kind)) {
      stopCountdown();
      panel.hidden = true;
      panel.replaceChildren();
      mode = null;
    }
  }

  function stopCountdown() {
    clearInterval(countdown);
    countdown = null;
  }

  function refused(code) {
    stopCountdown();
    show("newcomer", `${t(`console.error.${code}`)} ${t("console.seat.take_over_hint")}`, [
      [t("console.seat.take_over"), ask, "seat-take-over"],
    ]);
    setSeat("refused");
  }

  function ask() {
    waiting(null);
    getConnection()?.claimSeat();
  }

  /** Waiting for the holder's or the studio's answer, at most `waitS` seconds (null:
   * the server has not said yet). Closing the socket withdraws the request. */
  function waiting(waitS) {
    stopCountdown();
    const words = show("newcomer", t("console.seat.waiting"), [
      [t("console.seat.give_up"), giveUp, "seat-give-up"],
    ]);
    setSeat("waiting");
    if (waitS === null) return;
    const until = Date.now() + waitS * 1000;
    words.append(" ", t("console.seat.waiting_at_most", { seconds: Math.round(waitS) }), " ");
    // The countdown is for the eyes: the sentence already says how long, and a screen
    // reader must not read the alert again every second.
    const left = document.createElement("span");
    left.className = "seat-countdown";
    left.setAttribute("aria-hidden", "true");
    words.append(left);
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      left.textContent = t("console.seat.time_left", { time: formatSeconds(seconds) });
    };
    tick();
    countdown = setInterval(tick, 1000);
  }

  function giveUp() {
    // The connection then says "refused" (seat_taken) again: back to the offer to take over.
    getConnection()?.giveUpClaim();
  }

  function answer(claim, allow) {
    getConnection()?.sendNow({ type: "answer_claim", claim, allow });
    hide("holder");
  }

  return {
    status(state, code) {
      if (state === "online") {
        if (mode === "newcomer") hide("newcomer");
        setSeat(null);
      } else if (state === "refused" && TAKE_OVER_AFTER.has(code)) {
        refused(code);
      } else if (state === "refused") {
        // Refused for another reason (the link revoked meanwhile): no seat to wait for.
        if (mode === "newcomer") hide("newcomer");
        setSeat(null);
      }
    },
    message(message) {
      if (message.type === "seat_waiting") {
        waiting(Number(message.wait_s) || null);
        return true;
      }
      if (message.type === "seat_claim") {
        if (message.pending) {
          show("holder", t("console.seat.claimed"), [
            [t("console.seat.allow"), () => answer(message.claim, true), "seat-allow"],
            [t("console.seat.keep"), () => answer(message.claim, false), "seat-keep"],
          ]);
        } else {
          hide("holder");
        }
        return true;
      }
      return false;
    },
  };
}

/** 75 -> "1:15" */
function formatSeconds(seconds) {
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}
