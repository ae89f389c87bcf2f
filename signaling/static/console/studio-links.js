// The studio's staff links (docs/protocol.md, `links`): whose link is whose, until
// when it is valid, and a Revoke button with a confirmation step; a revoked link's
// page is closed at once on every node. Also the requests of a new page to take
// over a speaker's or interpreter's link, which the moderator may allow or refuse.

import { element } from "./page.js";
import { lang, t } from "/static/common/i18n.js";

/**
 * @param {() => import("./connection.js").Connection|null} getConnection
 * @param {(speakerId: string) => string} speakerName
 * @returns {{welcome(welcome: object): void, receive(message: object): boolean}}
 */
export function studioLinks(getConnection, speakerName) {
  let own = null; // this studio's own link: revoking it would close this page
  const list = document.getElementById("links");
  const status = document.getElementById("links-status");
  const claimsBox = document.getElementById("seat-claims");
  let links = [];
  let confirming = null; // the id of the link whose revocation awaits confirmation

  document.getElementById("links-refresh").addEventListener("click", () => ask());

  function ask() {
    getConnection()?.send({ type: "list_links" });
  }

  function when(seconds) {
    return new Date(seconds * 1000).toLocaleString(lang, {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    });
  }

  function whose(link) {
    const name = link.name || link.subject;
    if (link.role === "speaker") return t("studio.link_speaker", { name: link.name || speakerName(link.speaker) });
    if (link.role === "interpreter") return t("studio.link_interpreter", { booth: link.booth, name });
    return t("studio.link_moderator", { name });
  }

  function statusWords(link) {
    if (link.status === "revoked") return t("studio.link_revoked", { time: when(link.revoked_at) });
    if (link.status === "expired") return t("studio.link_expired");
    return t("studio.link_active", { time: when(link.expires_at) });
  }

  function render() {
    list.replaceChildren();
    status.textContent = links.length ? "" : t("studio.links_none");
    for (const link of links) {
      const who = whose(link);
      const item = element("li", { "data-link": link.id, "data-status": link.status },
        element("strong", { text: who }), " ",
        element("code", { text: link.id }), " — ",
        element("span", { class: "link-status", text: statusWords(link) }),
        link.id === own ? ` (${t("studio.link_own")})` : "");
      if (link.status === "active" && link.id !== own) {
        if (confirming === link.id) {
          item.append(element("p", { class: "link-confirm", role: "alert" },
            t("studio.link_confirm", { name: who }), " ",
            element("button", { type: "button", class: "leave", text: t("studio.link_confirm_yes"),
              onclick: () => {
                confirming = null;
                getConnection()?.send({ type: "revoke_link", link: link.id });
                render();
              } }),
            " ",
            element("button", { type: "button", text: t("studio.link_cancel"),
              onclick: () => { confirming = null; render(); } })));
        } else {
          item.append(" ", element("button", { type: "button", "aria-label": t("studio.link_revoke_of", { name: who }),
            text: t("studio.link_revoke"), onclick: () => { confirming = link.id; render(); } }));
        }
      }
      list.append(item);
    }
  }

  function renderClaims(claims) {
    claimsBox.replaceChildren();
    for (const claim of claims) {
      const who = whose({ ...claim, name: "" });
      const decide = (allow) => getConnection()?.send({ type: "answer_claim", claim: claim.claim, allow });
      claimsBox.append(element("p", { class: "seat-claim", role: "alert" },
        t("studio.seat_claim", { name: who }), " ",
        element("button", { type: "button", "aria-label": t("studio.seat_allow_of", { name: who }),
          text: t("studio.seat_allow"), onclick: () => decide(true) }), " ",
        element("button", { type: "button", "aria-label": t("studio.seat_refuse_of", { name: who }),
          text: t("studio.seat_refuse"), onclick: () => decide(false) })));
    }
  }

  return {
    welcome(welcome) {
      own = welcome?.scope?.invitation ?? null;
      ask();
    },
    receive(message) {
      if (message.type === "links") {
        links = message.links;
        render();
        return true;
      }
      if (message.type === "seat_claims") {
        renderClaims(message.claims);
        return true;
      }
      return false;
    },
  };
}
