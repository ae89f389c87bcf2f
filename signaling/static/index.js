// The event page: the program from /api/event, the start time in the event's
// time zone and in the visitor's, the sessions and who speaks in which language.
import { fetchEvent } from "/static/common/api.js";
import { append, clear, el } from "/static/common/dom.js";
import { formatDateTime, lang, localized, t, visitorTimeZone } from "/static/common/i18n.js";

function languageName(event, code) {
  const language = event.languages.find((item) => item.code === code);
  return language ? language.name : code;
}

function interpretationLine(event) {
  const pairs = event.booths.map((booth) =>
    booth.works_into.map((code) => languageName(event, code)).join(" ⇄ "),
  );
  return pairs.length ? t("event.interpretation", { languages: pairs.join(", ") }) : null;
}

function whenBlock(event) {
  const start = new Date(event.starts_at_utc);
  const local = visitorTimeZone();
  return [
    el("dt", {}, t("event.when")),
    el(
      "dd",
      {},
      el(
        "time",
        { id: "event-time", datetime: event.starts_at_utc, "data-timezone": event.timezone },
        t("event.event_time", { time: formatDateTime(start, event.timezone), zone: event.timezone }),
      ),
      el("br"),
      el(
        "span",
        { id: "local-time", "data-timezone": local },
        t("event.local_time", { time: formatDateTime(start, local), zone: local }),
      ),
    ),
  ];
}

function speakerItem(event, speaker) {
  const languageLabel = languageName(event, speaker.language);
  return el(
    "li",
    { class: "speaker", "data-speaker": speaker.id },
    el("span", { class: "speaker-name" }, speaker.name),
    speaker.name_native && speaker.name_native !== speaker.name
      ? el("span", { class: "speaker-native", lang: speaker.language }, ` (${speaker.name_native})`)
      : null,
    el("span", { class: "speaker-affiliation" }, localized(speaker.affiliation)),
    el(
      "span",
      { class: "speaker-language", "data-language": speaker.language },
      t("event.speaks", { language: languageLabel }),
    ),
  );
}

function render(event) {
  const main = clear(document.getElementById("event"));
  const title = localized(event.title);
  document.title = title;
  const supporters = event.supporters.map((item) => localized(item));
  const details = el(
    "dl",
    { class: "event-facts" },
    el("dt", {}, t("event.organizer")),
    el("dd", { id: "organizer" }, localized(event.organizer)),
    supporters.length ? el("dt", {}, t("event.supporters")) : null,
    supporters.length
      ? el("dd", { id: "supporters" }, el("ul", {}, supporters.map((s) => el("li", {}, s))))
      : null,
    whenBlock(event),
    el("dt", {}, t("event.venue")),
    el("dd", { id: "venue" }, localized(event.venue)),
    el("dt", {}, t("event.languages")),
    el(
      "dd",
      { id: "languages" },
      event.languages.map((language, index) => [
        index ? ", " : "",
        el("span", { lang: language.code }, language.name),
      ]),
      interpretationLine(event) ? el("br") : null,
      interpretationLine(event),
    ),
  );
  const register = el(
    "p",
    { class: "call-to-action" },
    event.registration_required ? el("span", {}, t("event.registration_required"), " ") : null,
    el("a", { class: "button", href: "/register" }, t("event.register")),
  );
  const note = event.note
    ? el(
        "section",
        { class: "note", "aria-labelledby": "note-heading" },
        el("h2", { id: "note-heading" }, t("event.note")),
        el("p", {}, localized(event.note)),
      )
    : null;
  const sessions = el(
    "section",
    { class: "sessions", "aria-labelledby": "sessions-heading" },
    el("h2", { id: "sessions-heading" }, t("event.sessions")),
    event.sessions.map((session) =>
      el(
        "section",
        { class: "session", "data-session": session.id, "aria-labelledby": `session-${session.id}` },
        el("h3", { id: `session-${session.id}` }, localized(session.title)),
        el("ul", { class: "speakers" }, session.speakers.map((s) => speakerItem(event, s))),
      ),
    ),
  );
  append(main, el("h1", {}, title), details, register, note, sessions);
  main.setAttribute("aria-busy", "false");
}

async function main() {
  try {
    render(await fetchEvent());
  } catch (error) {
    const status = document.getElementById("status");
    status.textContent = t("page.load_failed");
    document.getElementById("event").setAttribute("aria-busy", "false");
    console.error(error);
  }
}

document.documentElement.lang = lang;
main();
