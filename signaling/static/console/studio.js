// The moderator's studio: the program session by session, a "Go live" button
// and a preview per speaker, sessions started and ended, booths and channels
// watched, a warning when a channel has nobody on air, the language the speaker
// on air actually speaks, the booths' requests to slow down, and the chat with
// each booth (studio-chat.js). Nobody left in silence: an on-air light, alarms for a
// speaker whose media is lost, dead air and poor reception, the booths' failovers,
// and the moderator listens to the floor or to any channel as attendees hear it.
// The sessions' recordings are listed for download (studio-recordings.js), the staff
// links listed and revoked (studio-links.js).

import { element, formatClock, loadProgram, mediaRestoring, setOptions, startConsole } from "./page.js";
import { lang, localized, t } from "/static/common/i18n.js";
import { answerServerOffer, MediaKeeper, rtcConfiguration, slotOfTransceiver } from "./peer.js";
import { Mixer, analyse, meterLevel } from "./sound.js";
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
import { studioLinks } from "./studio-links.js";
import { studioRecordings } from "./studio-recordings.js";

const view = { welcome: null, summary: null, program: null, state: null, clockOffset: 0 };
let connection = null;
let pc = null;
const previews = new Map(); // speaker id -> MediaStream
const programVideo = document.getElementById("program-video");
const floorSelect = document.getElementById("floor-language");
const media = new MediaKeeper({
  renew: () => {
    // An answer still on its way would otherwise be taken for the new offer's.
    pc?.close();
    pc = null;
    connection.send({ type: "subscribe" });
  },
  onRestoring: (restoring) => mediaRestoring("previews", restoring),
});
const monitorSelect = document.getElementById("monitor-source");
const listenLevel = document.getElementById("listen-level");
let mixer = null;
let listenTrack = null;
const chat = studioChat(() => connection);
const recordings = studioRecordings();
const links = studioLinks(() => connection, (id) => speakerName(id));

function onWelcome(welcome) {
  view.welcome = welcome;
  view.summary = welcome.event;
  chat.welcome(welcome);
  links.welcome(welcome);
  render();
  if (pc) pc.close();
  pc = null;
  connection.send({ type: "subscribe" });
}

async function onOffer(message) {
  if (pc) pc.close();
  const peer = new RTCPeerConnection(rtcConfiguration(view.welcome));
  pc = peer;
  media.watch(peer);
  peer.addEventListener("track", (event) => {
    const slot = slotOfTransceiver(message.slots, event.transceiver);
    if (event.track.kind !== "video") {
      if (slot?.name === "listen") {
        listenTrack = event.track;
        mixer?.attach("listen", listenTrack, 1);
      }
      return;
    }
    const stream = new MediaStream([event.track]);
    // Previews are slots named "preview:<speaker id>" (or -, /); anything else is the program.
    const preview = /^preview[:/-](.+)$/.exec(slot?.name ?? "");
    const sign = /^sign:(.+)$/.exec(slot?.name ?? "");
    if (sign) {
      attachSign(sign[1], stream);
    } else if (preview) {
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

/** Each sign booth's interpreter on air, beside the program. */
function attachSign(boothId, stream) {
  const box = document.getElementById("sign-previews");
  let video = box.querySelector(`video[data-sign="${CSS.escape(boothId)}"]`);
  if (!video) {
    const name = (view.summary?.booths ?? []).find((booth) => booth.id === boothId)?.name ?? boothId;
    video = element("video", {
      "data-sign": boothId,
      playsinline: true,
      muted: true,
      autoplay: true,
      class: "preview",
      "aria-label": t("studio.sign_of", { booth: name }),
    });
    video.muted = true;
    box.append(video);
  }
  video.srcObject = stream;
  video.play().catch(() => {});
}

function attachPreview(speakerId) {
  const video = previewVideos.get(speakerId);
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
  } else {
    links.receive(message);
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
  renderOnAirLight(state);
  renderAlarms(event, state);
  renderMonitor(event, state);
  renderReception(event, state);
  renderFloorLanguage(event, state);
  renderSlowDown(event);

  renderChannels(event, state);
  renderBooths(event, state);
  recordings.update(event, state);
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

/** One preview element per speaker for the page's life: the program is redrawn on every
 * state, and a new media element each time would soon exhaust the browser's players. */
const previewVideos = new Map();

function previewVideo(speaker) {
  let video = previewVideos.get(speaker.id);
  if (!video) {
    video = element("video", {
      "data-preview": speaker.id,
      playsinline: true,
      muted: true,
      autoplay: true,
      class: "preview",
      "aria-label": t("studio.preview_of", { name: speaker.name }),
    });
    video.muted = true;
    previewVideos.set(speaker.id, video);
  }
  return video;
}

function speakerControls(speaker, onAirId) {
  const live = speaker.id === onAirId;
  const connected = speakerConnected(view.state, speaker.id);
  const video = previewVideo(speaker);
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

function renderOnAirLight(state) {
  const light = document.getElementById("on-air-light");
  const onAir = state?.on_air ?? null;
  const mode = !onAir ? "off" : onAir.media_live === false ? "lost" : "on";
  if (light.dataset.light === mode) return;
  light.dataset.light = mode;
  light.textContent = t(mode === "on" ? "studio.light_on_air" : mode === "lost" ? "studio.light_media_lost" : "studio.light_off_air");
}

function speakerName(id) {
  return speakerById(view.program, id)?.name ?? id ?? "";
}

function percent(fraction) {
  return (Math.round((fraction ?? 0) * 1000) / 10).toLocaleString(lang);
}

/** The words of one alarm; alarms are keyed so a screen reader announces each once. */
function alarmWords(event, alarm) {
  const language = alarm.channel ? languageName(event, alarm.channel) : "";
  const nowS = (Date.now() + view.clockOffset) / 1000;
  switch (alarm.kind) {
    case "speaker_media_lost":
      return t("studio.alarm_media_lost", { name: speakerName(alarm.speaker) });
    case "dead_air":
      return t("studio.alarm_dead_air", {
        language,
        name: alarm.interpreter ?? "",
        seconds: Math.max(0, Math.round(nowS - (alarm.since ?? nowS))),
      });
    case "poor_reception":
      return t("studio.alarm_poor_reception", {
        name: publisherName(alarm.publisher),
        loss: percent(alarm.loss),
        jitter: Math.round(alarm.jitter_ms ?? 0),
      });
    case "poor_delivery":
      return t("studio.alarm_poor_delivery", { language, loss: percent(alarm.loss), jitter: Math.round(alarm.jitter_ms ?? 0) });
    case "recording_stopped":
      return t("studio.alarm_recording_stopped", { channel: recordedChannelName(event, alarm.channel) });
    default:
      return alarm.kind;
  }
}

/** A recorded channel: the program (video and floor), the original (floor) or a language. */
function recordedChannelName(event, channel) {
  if (channel === "program") return t("studio.recording_program");
  if (channel === "original") return t("studio.recording_original");
  return languageName(event, channel);
}

/** "speaker:<id>" and "interpreter:<booth>:<who>" publishers, as people's names. */
function publisherName(publisher) {
  const [kind, ...rest] = String(publisher ?? "").split(":");
  if (kind === "speaker") return speakerName(rest.join(":"));
  if (kind === "interpreter") return rest.slice(1).join(":");
  return publisher ?? "";
}

function renderAlarms(event, state) {
  const box = document.getElementById("alarms");
  const wanted = new Map();
  for (const alarm of state?.alarms ?? []) {
    const key = [alarm.kind, alarm.speaker, alarm.channel, alarm.publisher].join("|");
    wanted.set(key, alarmWords(event, alarm));
  }
  for (const item of [...box.children]) {
    if (!wanted.has(item.dataset.key)) item.remove();
  }
  for (const [key, words] of wanted) {
    const existing = [...box.children].find((item) => item.dataset.key === key);
    if (existing) {
      if (existing.textContent !== words) existing.textContent = words;
    } else {
      box.append(element("p", { role: "alert", class: "alarm", "data-key": key, text: words }));
    }
  }
}

function renderMonitor(event, state) {
  setOptions(monitorSelect, [
    ["floor", t("studio.listen_floor")],
    ...event.languages.map((item) => [item.code, item.name]),
  ]);
  if (document.activeElement !== monitorSelect && state?.monitor) monitorSelect.value = state.monitor;
}

function renderReception(event, state) {
  const list = document.getElementById("reception");
  const health = state?.health;
  const lines = [];
  for (const item of event.languages) {
    const channel = health?.channels?.[item.code];
    if (!channel) continue;
    lines.push(
      t("studio.reception_channel", {
        language: item.name,
        loss: percent(channel.loss),
        worst: percent(health.worst_loss?.[item.code]),
        jitter: Math.round(channel.jitter_ms),
      }),
    );
  }
  for (const [source, reception] of Object.entries(health?.publishers ?? {})) {
    if (!source.endsWith("/audio")) continue;
    lines.push(
      t("studio.reception_publisher", {
        name: publisherName(source.slice(0, -"/audio".length)),
        loss: percent(reception.loss),
        jitter: Math.round(reception.jitter_ms),
      }),
    );
  }
  if (!lines.length) lines.push(t("studio.reception_none"));
  if ([...list.children].map((item) => item.textContent).join("\n") === lines.join("\n")) return;
  list.replaceChildren(...lines.map((line) => element("li", { text: line })));
}

function failoverWords(failover) {
  const time = formatClock(new Date(failover.at * 1000), lang);
  return failover.to
    ? t("studio.failover_to", { lost: failover.lost, to: failover.to, time })
    : t("studio.failover_fallback", { lost: failover.lost, time });
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
    const item = element("li", { "data-booth": booth.id },
      element("strong", { text: booth.name }),
      ` ${direction} — `,
      live.on_air ? t("studio.booth_on_air", { name: live.on_air }) : t("studio.booth_nobody"),
      people ? ` · ${people}` : "");
    if (live.last_failover) item.append(element("p", { class: "notice", text: failoverWords(live.last_failover) }));
    list.append(item);
  }
}

function send(message) {
  connection?.send(message);
}

document.getElementById("take-off-air").addEventListener("click", () => send({ type: "take_off_air" }));
floorSelect.addEventListener("change", () => send({ type: "set_floor_language", language: floorSelect.value || null }));
monitorSelect.addEventListener("change", () => send({ type: "monitor", source: monitorSelect.value }));
document.getElementById("start-listening").addEventListener("click", async () => {
  if (!mixer) {
    mixer = new Mixer();
    if (listenTrack) mixer.attach("listen", listenTrack, 1);
  }
  await mixer.resume();
  document.getElementById("start-listening").hidden = true;
});
setInterval(() => {
  const analyser = mixer?.analyser("listen");
  listenLevel.value = analyser ? meterLevel(analyser) : 0;
}, 100);

// What the studio really hears, for the end-to-end tests.
window.dragomanDebug = {
  /** {frequency, rms, peakDb} of what arrives on "listen", or null before listening. */
  analyse(name = "listen") {
    const analyser = mixer?.analyser(name);
    return analyser ? analyse(analyser, mixer.context.sampleRate) : null;
  },
};
setInterval(() => {
  document.getElementById("clock").textContent = formatClock(new Date(), lang);
  const event = view.program ?? view.summary;
  if (event) {
    renderSlowDown(event);
    renderAlarms(event, view.state); // the seconds of dead air go on counting
  }
}, 1000);

connection = startConsole({ onWelcome, onMessage });
loadProgram().then((program) => {
  view.program = program;
  render();
});
