// The moderator's studio: the program session by session, a "Go live" button
// and a preview per speaker, sessions started and ended, booths and channels
// watched, a warning when a channel has nobody on air, the language the speaker
// on air actually speaks, the booths' requests to slow down, and the chat with
// each booth (studio-chat.js).

import { element, formatClock, loadProgram, setOptions, startConsole } from "./page.js";
import { lang, localized, t } from "/static/common/i18n.js";
import { answerServerOffer, rtcConfiguration, slotOfTransceiver, whenFailed } from "./peer.js";
import {
  boothView,
  channelView,
  clockOffsetMs,
  listenerCount,
  onAirSpeakerId,
  slowDownRequests,
  speakerConnected,
} from "./live.js";
import { directionLabel, languageName, renderProgram, speakerById } from "./program.js";
import { studioChat } from "./studio-chat.js";

const view = { welcome: null, summary: null, program: null, state: null, clockOffset: 0 };
let connection = null;
let pc = null;
const previews = new Map(); // speaker id -> MediaStream
const programVideo = document.getElementById("program-video");
const floorSelect = document.getElementById("floor-language");
const chat = studioChat(() => connection);

function onWelcome(welcome) {
  view.welcome = welcome;
  view.summary = welcome.event;
  chat.welcome(welcome);
  render();
  if (pc) pc.close();
  pc = null;
  connection.send({ type: "subscribe" });
}

async function onOffer(message) {
  if (pc) pc.close();
  const peer = new RTCPeerConnection(rtcConfiguration(view.welcome));
  pc = peer;
  whenFailed(peer, () => {
    if (pc === peer && connection.online) connection.send({ type: "subscribe" });
  });
  peer.addEventListener("track", (event) => {
    if (event.track.kind !== "video") return;
    const slot = slotOfTransceiver(message.slots, event.transceiver);
    const stream = new MediaStream([event.track]);
    // Previews are slots named "preview:<speaker id>" (or -, /); anything else is the program.
    const preview = /^preview[:/-](.+)$/.exec(slot?.name ?? "");
    if (preview) {
      previews.set(preview[1], stream);
      attachPreview(preview[1]);
    } else {
      programVideo.srcObject = stream;
      programVideo.play().catch(() => {});
    }
  });
  const answer = await answerServerOffer(peer, message.sdp);
  if (pc !== peer) return;
  connection.send({ type: "answer", purpose: "subscribe", sdp: answer });
}

function attachPreview(speakerId) {
  const video = document.querySelector(`video[data-preview="${CSS.escape(speakerId)}"]`);
  const stream = previews.get(speakerId);
  if (video && stream && video.srcObject !== stream) {
    video.srcObject = stream;
    video.play().catch(() => {});
  }
}

function onMessage(message) {
  if (message.type === "state") {
    view.state = message;
    view.clockOffset = clockOffsetMs(message);
    render();
  } else if (message.type === "offer") {
    onOffer(message);
  } else if (message.type === "chat") {
    chat.receive(message);
  }
}

function render() {
  const event = view.program ?? view.summary;
  if (!event) return;
  const state = view.state;
  document.getElementById("event-title").textContent = localized(event.title);
  const onAirId = onAirSpeakerId(state);
  const speaker = speakerById(view.program, onAirId);
  document.getElementById("on-air-speaker").textContent = onAirId
    ? t("studio.speaker_on_air", {
        name: speaker?.name ?? onAirId,
        language: languageName(event, state.on_air.language),
      })
    : t("studio.nobody_on_air");
  document.getElementById("take-off-air").disabled = !onAirId;
  renderFloorLanguage(event, state);
  renderSlowDown(event);

  renderChannels(event, state);
  renderBooths(event, state);
  if (!view.program) return;
  const program = document.getElementById("program");
  renderProgram(program, view.program, state?.session ?? null, (item) => speakerControls(item, onAirId));
  for (const section of program.querySelectorAll("section.session")) {
    const sessionId = section.dataset.session;
    const current = sessionId === state?.session;
    const button = current
      ? element("button", { type: "button", text: t("studio.end_session"), onclick: () => send({ type: "end_session" }) })
      : element("button", {
          type: "button",
          text: t("studio.start_session"),
          onclick: () => send({ type: "start_session", session_id: sessionId }),
        });
    section.querySelector("h3").after(button);
  }
  for (const id of previews.keys()) attachPreview(id);
}

function speakerControls(speaker, onAirId) {
  const live = speaker.id === onAirId;
  const connected = speakerConnected(view.state, speaker.id);
  const video = element("video", {
    "data-preview": speaker.id,
    playsinline: true,
    muted: true,
    autoplay: true,
    class: "preview",
    "aria-label": t("studio.preview_of", { name: speaker.name }),
  });
  video.muted = true;
  // A preview of someone not connected would only be a black box.
  video.hidden = !connected;
  const button = element("button", {
    type: "button",
    class: live ? "go-live live" : "go-live",
    "aria-label": `${t("studio.go_live")}: ${speaker.name}`,
    onclick: () => send({ type: "put_on_air", speaker_id: speaker.id }),
    text: live ? t("studio.live") : t("studio.go_live"),
  });
  button.disabled = !connected || live;
  const presence = element("span", {
    class: connected ? "presence connected" : "presence",
    text: connected ? t("studio.connected") : t("studio.not_connected"),
  });
  return [presence, button, video];
}

function renderFloorLanguage(event, state) {
  setOptions(floorSelect, [
    ["", t("studio.floor_language_program")],
    ...event.languages.map((item) => [item.code, item.name]),
  ]);
  floorSelect.disabled = !state?.on_air;
  if (document.activeElement !== floorSelect) floorSelect.value = state?.floor_language ?? "";
}

/**
 * One alert per booth asking to slow down. Alerts are added and removed, never
 * rebuilt: a screen reader announces an alert each time it is inserted, and
 * states arrive many times a second.
 */
function renderSlowDown(event) {
  const box = document.getElementById("slow-down-requests");
  const nowS = (Date.now() + view.clockOffset) / 1000;
  const showing = new Map(slowDownRequests(view.state, nowS).map((request) => [request.booth, request]));
  for (const alert of [...box.children]) {
    if (!showing.has(alert.dataset.booth)) alert.remove();
  }
  const booths = view.summary?.booths ?? event.booths ?? [];
  for (const boothId of showing.keys()) {
    if ([...box.children].some((alert) => alert.dataset.booth === boothId)) continue;
    const name = booths.find((booth) => booth.id === boothId)?.name ?? boothId;
    box.append(element("p", { role: "alert", "data-booth": boothId, text: t("studio.slow_down", { booth: name }) }));
  }
}

function renderChannels(event, state) {
  const list = document.getElementById("channels");
  const warnings = document.getElementById("channel-warnings");
  list.replaceChildren();
  warnings.replaceChildren();
  const speaking = state?.on_air ?? null;
  for (const item of event.languages) {
    const channel = channelView(state, item.code);
    const kind = channel?.kind ?? null;
    let words = "";
    if (channel?.reason === "no_speaker") words = t("studio.nobody_on_air");
    else if (kind === "interpreter") words = t("studio.carries_interpretation", { name: channel.interpreter ?? "" });
    else if (channel?.reason === "cough") words = t("studio.carries_cough");
    else if (kind === "floor" && channel.reason === "speaker_language") words = t("studio.carries_floor_same");
    else if (kind === "floor") words = t("studio.carries_floor_fallback");
    else if (kind === "silence") words = t("studio.carries_silence");
    list.append(
      element("li", { "data-channel": item.code }, element("strong", { text: item.name }), ` — ${words} · `,
        t("console.listeners_count", { count: listenerCount(state, item.code) })),
    );
    // Only a channel that needs an interpreter can lack one.
    if (speaking && speaking.language !== item.code && kind !== "interpreter" && channel?.reason !== "cough") {
      warnings.append(element("p", { role: "alert", class: "warning", text: t("studio.no_interpreter", { language: item.name }) }));
    }
  }
}

function renderBooths(event, state) {
  const list = document.getElementById("booths");
  list.replaceChildren();
  for (const booth of view.summary?.booths ?? event.booths ?? []) {
    const live = boothView(state, booth.id) ?? {};
    const direction = live.direction?.source ? directionLabel(live.direction.source, live.direction.into) : "";
    const people = (live.interpreters ?? [])
      .map((person) => `${person.id}${person.connected ? "" : ` (${t("studio.not_connected")})`}`)
      .join(", ");
    list.append(
      element("li", { "data-booth": booth.id },
        element("strong", { text: booth.name }),
        ` ${direction} — `,
        live.on_air ? t("studio.booth_on_air", { name: live.on_air }) : t("studio.booth_nobody"),
        people ? ` · ${people}` : ""),
    );
  }
}

function send(message) {
  connection?.send(message);
}

document.getElementById("take-off-air").addEventListener("click", () => send({ type: "take_off_air" }));
floorSelect.addEventListener("change", () => send({ type: "set_floor_language", language: floorSelect.value || null }));
setInterval(() => {
  document.getElementById("clock").textContent = formatClock(new Date(), lang);
  const event = view.program ?? view.summary;
  if (event) renderSlowDown(event);
}, 1000);

connection = startConsole({ onWelcome, onMessage });
loadProgram().then((program) => {
  view.program = program;
  render();
});
