// The studio's recordings: every recorded file of every session (the program, the
// original and each language, part by part), each with a download link carrying the
// moderator's token. Read from GET /api/recordings when the page opens, when a session
// starts or ends, and on the refresh button.

import { element } from "./page.js";
import { pageToken } from "/static/common/api.js";
import { lang, localized, t } from "/static/common/i18n.js";
import { languageName } from "./program.js";

/** 75.4 -> "1:15", 3725 -> "1:02:05". */
function clockDuration(seconds) {
  const whole = Math.round(seconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** @returns {{update(event, state): void}} */
export function studioRecordings() {
  const list = document.getElementById("recordings");
  const status = document.getElementById("recordings-status");
  const refresh = document.getElementById("recordings-refresh");
  let event = null;
  let session; // the session in progress at the last read (undefined: never read)
  let reading = null;

  async function read() {
    const token = pageToken();
    if (!token || reading) return;
    status.textContent = t("studio.recordings_loading");
    reading = fetch(`/api/recordings?token=${encodeURIComponent(token)}`, { credentials: "same-origin" });
    try {
      const response = await reading;
      const data = await response.json().catch(() => null);
      if (!response.ok) throw new Error(data?.error?.message ?? response.statusText);
      show(data.recordings, token);
    } catch (error) {
      status.textContent = t("studio.recordings_failed", { reason: String(error?.message ?? error) });
    } finally {
      reading = null;
    }
  }

  function channelName(channel) {
    if (channel === "program") return t("studio.recording_program");
    if (channel === "original") return t("studio.recording_original");
    return event ? languageName(event, channel) : channel;
  }

  function show(recordings, token) {
    list.replaceChildren();
    status.textContent = recordings.length ? "" : t("studio.recordings_none");
    const sessions = new Map();
    for (const item of recordings) {
      if (!sessions.has(item.session)) sessions.set(item.session, []);
      sessions.get(item.session).push(item);
    }
    for (const [sessionId, items] of sessions) {
      const title = event?.sessions?.find((s) => s.id === sessionId)?.title;
      const heading = title ? localized(title) : sessionId;
      const entries = items.map((item) => {
        const file = item.path.split("/").pop();
        const when = item.started_at ? new Date(item.started_at).toLocaleString(lang) : "";
        const label = t("studio.recording_item", {
          channel: channelName(item.channel),
          part: item.part,
          duration: clockDuration(item.duration_s),
          megabytes: (item.bytes / 1e6).toLocaleString(lang, { maximumFractionDigits: 2 }),
        });
        return element(
          "li",
          {},
          element("a", {
            href: `/recordings/${encodeURIComponent(sessionId)}/${encodeURIComponent(file)}?token=${encodeURIComponent(token)}`,
            download: `${sessionId}-${file}`,
            text: label,
          }),
          when ? element("span", { class: "recording-when", text: ` ${when}` }) : null,
        );
      });
      list.append(element("li", {}, element("span", { class: "recording-session", text: heading }), element("ul", {}, ...entries)));
    }
  }

  refresh.addEventListener("click", () => read());

  return {
    update(currentEvent, state) {
      event = currentEvent;
      const now = state?.session ?? null;
      if (now !== session) {
        session = now;
        read();
      }
    },
  };
}
