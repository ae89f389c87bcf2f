// The seat of a speaker's or interpreter's link (docs/protocol.md, "One page per
// seat"): the link works on one page at a time, and never changes page silently.
// A page refused because another page has the link (or displaced by one) offers to
// take over; the page that has it is asked before it lets go, and so is the studio.

import { t } from "/static/common/i18n.js";

// Refusals after which this page may ask to take the seat (back).
const TAKE_OVER_AFTER = new Set(["seat_taken", "claim_refused", "claim_expired", "displaced"]);

/**
 * @param {() => import("./connection.js").Connection|null} getConnection
 * @returns {{status(state: string, code?: string): void, message(message: object): boolean}}
 */
export function seatPanel(getConnection) {
  let panel = null;
  let mode = null; // "newcomer" (refused or waiting) or "holder" (asked to let go)

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
  }

  function hide(kind) {
    if (panel && (kind === undefined || mode === kind)) {
      panel.hidden = true;
      panel.replaceChildren();
      mode = null;
    }
  }

  function answer(claim, allow) {
    getConnection()?.sendNow({ type: "answer_claim", claim, allow });
    hide("holder");
  }

  return {
    status(state, code) {
      if (state === "online") {
        hide("newcomer");
      } else if (state === "refused" && TAKE_OVER_AFTER.has(code)) {
        show("newcomer", `${t(`console.error.${code}`)} ${t("console.seat.take_over_hint")}`, [
          [t("console.seat.take_over"), () => {
            show("newcomer", t("console.seat.waiting"), []);
            getConnection()?.claimSeat();
          }],
        ]);
      }
    },
    message(message) {
      if (message.type === "seat_waiting") {
        show("newcomer", t("console.seat.waiting"), []);
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
