// The event program as the consoles show it, and the few questions the pages
// ask of it (the live state's are in live.js).

import { element } from "./page.js";
import { localized, t } from "/static/common/i18n.js";

export function languageName(event, code) {
  return event?.languages?.find((language) => language.code === code)?.name ?? code;
}

export function allSpeakers(event) {
  return (event?.sessions ?? []).flatMap((session) => session.speakers);
}

export function speakerById(event, id) {
  return allSpeakers(event).find((speaker) => speaker.id === id) ?? null;
}

/** "RU → FR" from two language codes. */
export function directionLabel(from, into) {
  if (!from || !into) return "";
  return `${from.toUpperCase()} → ${into.toUpperCase()}`;
}

/**
 * Renders the program session by session into `container`; the current session
 * is highlighted (aria-current). `speakerExtra(speaker)` may add nodes per speaker;
 * `onAirId`, the speaker on air, is marked *Speaking now*.
 */
export function renderProgram(container, event, currentSessionId, speakerExtra = null, onAirId = null) {
  container.replaceChildren();
  for (const session of event?.sessions ?? []) {
    const current = session.id === currentSessionId;
    const titleId = `session-${session.id}-title`;
    const section = element(
      "section",
      {
        class: current ? "session current" : "session",
        "aria-labelledby": titleId,
        "aria-current": current ? "true" : null,
        "data-session": session.id,
      },
      element("h3", { id: titleId, text: localized(session.title) }),
      current ? element("p", { class: "badge", text: t("console.current_session") }) : null,
    );
    const list = element("ul", { class: "speakers" });
    for (const speaker of session.speakers) {
      const onAir = speaker.id === onAirId;
      const item = element(
        "li",
        { "data-speaker": speaker.id, class: onAir ? "on-air" : null, "aria-current": onAir ? "true" : null },
        onAir ? element("span", { class: "badge speaking-now", text: t("watch.speaking_now") }) : null,
        element("span", { class: "speaker-name", text: speaker.name }),
        speaker.name_native
          ? element("span", { class: "speaker-native", lang: speaker.language, text: ` (${speaker.name_native})` })
          : null,
        element("span", { class: "speaker-affiliation", text: localized(speaker.affiliation) }),
        element("span", {
          class: "speaker-language",
          text: languageName(event, speaker.language),
          lang: speaker.language,
        }),
      );
      if (speakerExtra) item.append(...speakerExtra(speaker));
      list.append(item);
    }
    section.append(list);
    container.append(section);
  }
}
