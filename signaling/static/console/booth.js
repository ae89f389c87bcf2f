// The interpreter's booth: microphone on air into the booth's channel (and a
// red light that says so), cough key, handover with the partner (requested,
// withdrawn, accepted), what to listen to (floor or relay, never a relay that
// leads back to the booth's own channel), the speaker's video, the booth's
// direction, listeners, a clock, the turn timer with its reminder, meters for
// what comes in and what goes out, headphone volume and tone behind a limiter,
// the chat with the partner and the studio, and a button asking the speaker on
// air to slow down.

import { formatClock, formatDuration, loadProgram, mediaRestoring, setOptions, startConsole } from "./page.js";
import { lang, localized, t } from "/static/common/i18n.js";
import { answerServerOffer, MediaKeeper, microphoneConstraints, offerTracks, rtcConfiguration } from "./peer.js";
import { analyse, localAnalyser, meterLevel, Mixer, peakLevel } from "./sound.js";
import { ChatPanel } from "./chat.js";
import { boothView, clockOffsetMs, listenerCount, onAirSpeakerId, slowDownRequests } from "./live.js";
import { directionLabel, languageName, speakerById } from "./program.js";

const view = {
  welcome: null,
  summary: null,
  program: null,
  state: null,
  boothId: null,
  me: null,
  clockOffset: 0,
};
let connection = null;
let microphone = null; // MediaStream, kept across reconnections
let publisher = null;
let subscriber = null;
let mixer = null;
let meterAnalyser = null;
let coughing = false;
const received = new Map();
// After a network outage: publish the microphone anew, and subscribe anew.
const microphoneMedia = new MediaKeeper({
  renew: () => publish(),
  onRestoring: (restoring) => mediaRestoring("microphone", restoring),
});
const listeningMedia = new MediaKeeper({
  renew: () => {
    // An answer still on its way would otherwise be taken for the new offer's.
    subscriber?.close();
    subscriber = null;
    connection.send({ type: "subscribe" });
  },
  onRestoring: (restoring) => mediaRestoring("listening", restoring),
});

const micButton = document.getElementById("microphone");
const coughButton = document.getElementById("cough");
const requestButton = document.getElementById("request-handover");
const takeOverButton = document.getElementById("take-over");
const acceptButton = document.getElementById("accept-handover");
const slowDownButton = document.getElementById("slow-down");
const listenSelect = document.getElementById("listen-to");
const directionSelect = document.getElementById("direction-choice");
const startListening = document.getElementById("start-listening");
const withdrawButton = document.getElementById("withdraw-handover");
const volumeSlider = document.getElementById("headphone-volume");
const bassSlider = document.getElementById("bass");
const trebleSlider = document.getElementById("treble");
const onAirLight = document.getElementById("on-air-light");
const chat = new ChatPanel(document.getElementById("chat"), {
  send: (message) => connection?.send(message) ?? false,
  who: (sender, role) => (role === "moderator" ? t("chat.studio") : sender === view.me ? t("chat.you") : sender),
  onUnread: () => {
    const count = chat.totalUnread();
    const badge = document.getElementById("chat-unread");
    badge.hidden = count === 0;
    badge.textContent = t("chat.unread", { count });
  },
});
const video = document.getElementById("speaker-video");

async function onWelcome(welcome) {
  view.welcome = welcome;
  view.summary = welcome.event;
  view.boothId = welcome.scope?.booth ?? null;
  view.me = welcome.scope?.subject ?? null;
  if (view.boothId) {
    chat.setThreads(
      [
        { id: `booth:${view.boothId}`, label: t("chat.partners") },
        { id: `studio:${view.boothId}`, label: t("chat.studio") },
      ],
      view.me,
    );
  }
  render();
  if (subscriber) subscriber.close();
  subscriber = null;
  received.clear();
  connection.send({ type: "subscribe" });
  await publish();
}

/** A sign booth's interpreter signs on camera: his camera feeds the booth, not a microphone. */
function signBooth() {
  return (view.summary?.booths ?? []).some((item) => item.id === view.boothId && item.kind === "sign");
}

async function publish() {
  if (publisher) publisher.close();
  publisher = null;
  if (!microphone) {
    try {
      microphone = await navigator.mediaDevices.getUserMedia(
        signBooth() ? { video: true, audio: false } : { audio: microphoneConstraints() },
      );
    } catch (error) {
      document.getElementById("on-air-status").textContent = t("booth.no_microphone", { error: error.message });
      return;
    }
    if (mixer && microphone.getAudioTracks().length) startMeter();
  }
  const peer = new RTCPeerConnection(rtcConfiguration(view.welcome));
  publisher = peer;
  microphoneMedia.watch(peer);
  const offer = await offerTracks(peer, microphone);
  if (publisher !== peer) return;
  connection.send({ type: "offer", purpose: "publish", sdp: offer });
}

async function onOffer(message) {
  if (subscriber) subscriber.close();
  const peer = new RTCPeerConnection(rtcConfiguration(view.welcome));
  subscriber = peer;
  listeningMedia.watch(peer);
  peer.addEventListener("track", (event) => {
    received.set(event.track.kind, event.track);
    if (event.track.kind === "video") {
      video.srcObject = new MediaStream([event.track]);
      video.play().catch(() => {});
    } else if (mixer) {
      mixer.attach("listen", event.track, 1);
    }
  });
  const answer = await answerServerOffer(peer, message.sdp);
  if (subscriber !== peer) return;
  connection.send({ type: "answer", purpose: "subscribe", sdp: answer });
}

async function onAnswer(message) {
  // The answer to an offer that a newer one replaced meanwhile (after a network outage)
  // finds the new peer waiting for its own answer: that try fails and the next one is made.
  if (publisher?.signalingState !== "have-local-offer") return;
  await publisher.setRemoteDescription({ type: "answer", sdp: message.sdp }).catch(() => {});
}

/** Audio may only start after a gesture: the first click in the booth starts it. */
function ensureAudio() {
  if (!mixer) {
    mixer = new Mixer();
    applyHeadphones();
    startFloorMeter();
  }
  mixer.resume();
  const track = received.get("audio");
  if (track && !mixer.analyser("listen")) mixer.attach("listen", track, 1);
  if (microphone?.getAudioTracks().length && !meterAnalyser) startMeter();
  startListening.hidden = true;
}

function startMeter() {
  meterAnalyser = localAnalyser(mixer.context, microphone);
  const meter = document.getElementById("vu-meter");
  const tick = () => {
    meter.value = meterLevel(meterAnalyser);
    requestAnimationFrame(tick);
  };
  tick();
}

function applyHeadphones() {
  if (!mixer) return;
  mixer.setMasterVolume(Number(volumeSlider.value) / 100);
  mixer.setTone(Number(bassSlider.value), Number(trebleSlider.value));
  localStorage.setItem(
    "dragoman.booth.headphones",
    JSON.stringify({ volume: volumeSlider.value, bass: bassSlider.value, treble: trebleSlider.value }),
  );
}

function restoreHeadphones() {
  try {
    const saved = JSON.parse(localStorage.getItem("dragoman.booth.headphones") ?? "null");
    if (!saved) return;
    volumeSlider.value = saved.volume;
    bassSlider.value = saved.bass;
    trebleSlider.value = saved.treble;
  } catch {
    // A damaged setting is ignored: the defaults are safe.
  }
}

/** The level of what comes in (floor or relay), as received, before the headphone settings. */
function startFloorMeter() {
  const meter = document.getElementById("floor-meter");
  const tick = () => {
    const analyser = mixer?.analyser("listen");
    meter.value = analyser ? meterLevel(analyser) : 0;
    requestAnimationFrame(tick);
  };
  tick();
}

function booth() {
  return boothView(view.state, view.boothId) ?? {};
}

function amOnAir() {
  return view.me !== null && booth().on_air === view.me;
}

function partners() {
  return (booth().interpreters ?? []).filter((person) => person.id !== view.me);
}

function serverNow() {
  return (Date.now() + view.clockOffset) / 1000;
}

function mayTakeOver() {
  const state = booth();
  if (!state.on_air || amOnAir()) return false;
  if (view.state?.you?.may_take_over) return true;
  if (!state.on_air_connected) return true;
  const handover = state.handover;
  return Boolean(handover && handover.by === view.me && serverNow() >= handover.take_over_at);
}

/** The booth's own request to slow down, while it shows. */
function ownSlowDown() {
  return slowDownRequests(view.state, serverNow()).find((request) => request.booth === view.boothId) ?? null;
}

function renderSlowDown() {
  const asking = ownSlowDown() !== null;
  slowDownButton.setAttribute("aria-pressed", String(asking));
  // Withdrawing is always possible; asking only while someone speaks.
  slowDownButton.disabled = !asking && !onAirSpeakerId(view.state);
  const status = document.getElementById("slow-down-status");
  const words = asking ? t("booth.slow_down_sent") : "";
  if (status.textContent !== words) status.textContent = words;
}

function setCough(active) {
  if (coughing === active) return;
  coughing = active;
  // Muting the track at once spares the listeners the cough even before the
  // server has re-pointed the channel.
  for (const track of microphone?.getAudioTracks() ?? []) track.enabled = !active;
  coughButton.classList.toggle("active", active);
  coughButton.setAttribute("aria-pressed", String(active));
  renderOnAirLight();
  connection?.send({ type: "cough", on: active });
}

function onMessage(message) {
  switch (message.type) {
    case "state":
      view.state = message;
      view.clockOffset = clockOffsetMs(message);
      render();
      break;
    case "offer":
      onOffer(message);
      break;
    case "answer":
      onAnswer(message);
      break;
    case "chat":
      chat.receive(message);
      break;
    default:
      break;
  }
}

/**
 * What the node noticed about this booth: the last failover (who dropped, who took the
 * channel) and dead air on the booth's channels. Kept, not rebuilt, so a screen reader
 * announces each once.
 */
function renderBoothAlerts(event, state) {
  const box = document.getElementById("booth-alerts");
  const wanted = new Map();
  const failover = state.last_failover;
  if (failover) {
    const time = formatClock(new Date(failover.at * 1000), lang);
    const words = failover.to === view.me
      ? t("booth.failover_you", { lost: failover.lost, time })
      : failover.to
        ? t("booth.failover_to", { lost: failover.lost, to: failover.to, time })
        : t("booth.failover_fallback", { lost: failover.lost, time });
    wanted.set(`failover|${failover.at}`, ["notice", words]);
  }
  const nowS = (Date.now() + view.clockOffset) / 1000;
  for (const alarm of view.state?.alarms ?? []) {
    if (alarm.kind !== "dead_air") continue;
    const seconds = Math.max(0, Math.round(nowS - (alarm.since ?? nowS)));
    const words = t("booth.dead_air", { language: languageName(event, alarm.channel), seconds });
    wanted.set(`dead_air|${alarm.channel}`, ["alarm", words]);
  }
  for (const item of [...box.children]) if (!wanted.has(item.dataset.key)) item.remove();
  for (const [key, [kind, words]] of wanted) {
    const existing = [...box.children].find((item) => item.dataset.key === key);
    if (existing) {
      if (existing.textContent !== words) existing.textContent = words;
      continue;
    }
    const item = document.createElement("p");
    item.className = kind;
    item.dataset.key = key;
    item.setAttribute("role", kind === "alarm" ? "alert" : "status");
    item.textContent = words;
    box.append(item);
  }
}

function render() {
  const event = view.program ?? view.summary;
  if (!event) return;
  const boothProgram = (view.summary?.booths ?? event.booths ?? []).find((item) => item.id === view.boothId);
  document.getElementById("booth-name").textContent = boothProgram
    ? t("booth.heading", { booth: boothProgram.name, name: view.me ?? "" })
    : localized(event.title);

  const speakerId = onAirSpeakerId(view.state);
  const speaker = speakerById(view.program, speakerId);
  document.getElementById("on-air-speaker").textContent = speakerId
    ? t("booth.speaker_on_air", {
        name: speaker?.name ?? speakerId,
        language: languageName(event, view.state.on_air.language),
      })
    : t("booth.no_speaker");

  const state = booth();
  const direction = state.direction ?? null;
  document.getElementById("direction").textContent = direction?.source
    ? directionLabel(direction.source, direction.into)
    : direction
      ? `→ ${direction.into.toUpperCase()}`
      : t("booth.no_direction");
  renderDirectionChoice(state);
  renderListenChoice(event);

  const onAir = amOnAir();
  const someoneElse = Boolean(state.on_air) && !onAir;
  const micWords = t(signBooth() ? "booth.camera" : "booth.microphone");
  if (micButton.textContent !== micWords) micButton.textContent = micWords;
  micButton.setAttribute("aria-pressed", String(onAir));
  micButton.classList.toggle("on-air", onAir);
  micButton.disabled = someoneElse || !view.state;
  coughButton.disabled = !onAir;
  if (!onAir) setCough(false);
  renderOnAirLight();
  renderSlowDown();
  renderBoothAlerts(event, state);
  document.getElementById("on-air-status").textContent = onAir
    ? t("booth.you_are_on_air")
    : someoneElse
      ? t("booth.partner_on_air", { name: state.on_air })
      : t("booth.nobody_on_air");

  const others = partners();
  document.getElementById("partner-status").textContent = others.length
    ? others
        .map((other) => t(other.connected ? "booth.partner_connected" : "booth.partner_away", { name: other.id }))
        .join(" · ")
    : t("booth.no_partner");
  const handover = state.handover ?? null;
  const iRequested = handover?.by === view.me;
  requestButton.hidden = !someoneElse || iRequested;
  withdrawButton.hidden = !iRequested;
  takeOverButton.hidden = !mayTakeOver();
  acceptButton.hidden = !(onAir && handover && handover.by !== view.me);
  document.getElementById("handover-request").textContent =
    onAir && handover && handover.by !== view.me
      ? t("booth.handover_requested", { name: handover.by })
      : iRequested
        ? t("booth.handover_waiting")
        : "";

  const list = document.getElementById("listeners");
  list.replaceChildren();
  for (const item of event.languages) {
    const li = document.createElement("li");
    li.textContent = t("console.listeners_on", {
      language: item.name,
      count: listenerCount(view.state, item.code),
    });
    list.append(li);
  }
}

function renderListenChoice(event) {
  const loops = view.state?.you?.listen_loops ?? [];
  const onAir = amOnAir();
  // On air, a relay that leads back to our own channel cannot be chosen (the server
  // refuses it too); off air it is the partner, who may be monitored, and whom one
  // stops hearing on going on air.
  const label = (item) =>
    onAir && loops.includes(item.code) ? t("booth.relay_own_channel", { language: item.name }) : item.name;
  setOptions(listenSelect, [["floor", t("booth.floor")], ...event.languages.map((item) => [item.code, label(item)])]);
  for (const option of listenSelect.options) option.disabled = onAir && loops.includes(option.value);
  const current = view.state?.you?.listen ?? "floor";
  if (document.activeElement !== listenSelect) listenSelect.value = current;
  const relayedFrom = view.state?.you?.listen_relayed_from ?? [];
  const note = document.getElementById("relay-note");
  const words = relayedFrom.length
    ? t("booth.relay_of_relay", {
        language: languageName(event, current),
        from: relayedFrom.map((code) => languageName(event, code)).join(", "),
      })
    : loops.includes(current)
      ? t("booth.relay_booth_channel", { language: languageName(event, current) })
      : current !== "floor"
        ? t("booth.relay_from", { language: languageName(event, current) })
        : "";
  if (note.textContent !== words) note.textContent = words;
}

/** The red light: on air (red), on air but muted by the cough (amber), or off. */
function renderOnAirLight() {
  const onAir = amOnAir();
  const state = !onAir ? "off" : coughing ? "muted" : "on-air";
  onAirLight.dataset.state = state;
  const partner = !onAir ? booth().on_air : null;
  const words = partner
    ? t("booth.light_partner", { name: partner })
    : t({ off: "booth.light_off", "on-air": "booth.light_on", muted: "booth.light_muted" }[state]);
  if (onAirLight.textContent !== words) onAirLight.textContent = words;
  document.body.dataset.onAir = state;
}

function shiftSeconds() {
  return 60 * (view.summary?.shift_minutes ?? 30);
}

function renderDirectionChoice(state) {
  const label = directionSelect.closest("label");
  const languages = state.works_into ?? [];
  label.hidden = languages.length !== 2;
  if (languages.length !== 2) return;
  const [a, b] = languages;
  setOptions(directionSelect, [
    ["", t("booth.direction_automatic")],
    [b, directionLabel(a, b)],
    [a, directionLabel(b, a)],
  ]);
  if (document.activeElement !== directionSelect) directionSelect.value = state.direction_override ?? "";
}

function tickClock() {
  document.getElementById("clock").textContent = formatClock(new Date(), lang);
  const since = booth().on_air_since;
  const onAirFor = booth().on_air && typeof since === "number" ? serverNow() - since : 0;
  const timer = document.getElementById("time-on-air");
  timer.textContent = formatDuration(onAirFor);
  const due = onAirFor >= shiftSeconds();
  timer.classList.toggle("due", due);
  document.getElementById("shift-length").textContent = t("booth.shift_length", {
    minutes: shiftSeconds() / 60,
  });
  // Both partners see the reminder: the one on air to offer, the other to be ready.
  const reminder = due
    ? t(amOnAir() ? "booth.shift_due_you" : "booth.shift_due_partner", {
        minutes: Math.floor(onAirFor / 60),
        name: booth().on_air ?? "",
      })
    : "";
  const box = document.getElementById("shift-reminder");
  if (box.textContent !== reminder) box.textContent = reminder;
  // The take-over deadline passes without the server saying anything.
  takeOverButton.hidden = !mayTakeOver();
  if (view.state) renderSlowDown();
  const event = view.program ?? view.summary;
  if (view.state && event) renderBoothAlerts(event, booth()); // dead air's seconds go on
}

micButton.addEventListener("click", () => {
  ensureAudio();
  connection?.send({ type: "mic", on: !amOnAir() });
});
coughButton.addEventListener("pointerdown", (event) => {
  coughButton.setPointerCapture?.(event.pointerId);
  setCough(true);
});
for (const name of ["pointerup", "pointercancel", "lostpointercapture"]) {
  coughButton.addEventListener(name, () => setCough(false));
}
// Keyboard: space or Enter on the focused Cough button, and the space bar
// anywhere outside a form field, cough while held.
document.addEventListener(
  "keydown",
  (event) => {
    if (event.code !== "Space" || isFormField(event.target)) return;
    event.preventDefault();
    if (!event.repeat && amOnAir()) setCough(true);
  },
  true,
);
document.addEventListener(
  "keyup",
  (event) => {
    if (event.code !== "Space" || isFormField(event.target)) return;
    event.preventDefault();
    setCough(false);
  },
  true,
);
window.addEventListener("blur", () => setCough(false));
requestButton.addEventListener("click", () => {
  ensureAudio();
  connection?.send({ type: "request_handover" });
});
withdrawButton.addEventListener("click", () => {
  connection?.send({ type: "withdraw_handover" });
});
for (const slider of [volumeSlider, bassSlider, trebleSlider]) slider.addEventListener("input", applyHeadphones);
takeOverButton.addEventListener("click", () => {
  ensureAudio();
  connection?.send({ type: "take_over" });
});
acceptButton.addEventListener("click", () => {
  ensureAudio();
  connection?.send({ type: "accept_handover" });
});
slowDownButton.addEventListener("click", () => {
  connection?.send({ type: "slow_down", on: ownSlowDown() === null });
});
listenSelect.addEventListener("change", () => {
  ensureAudio();
  connection?.send({ type: "listen", source: listenSelect.value });
});
directionSelect.addEventListener("change", () => {
  connection?.send({ type: "set_direction", into: directionSelect.value || null });
});
startListening.addEventListener("click", ensureAudio);

function isFormField(target) {
  return (
    target instanceof HTMLInputElement ||
    target instanceof HTMLSelectElement ||
    target instanceof HTMLTextAreaElement
  );
}

restoreHeadphones();
setInterval(tickClock, 1000);
tickClock();

window.dragomanDebug = {
  /** {frequency, rms, peakDb} of what the interpreter receives in his headphones, or null. */
  analyse() {
    const analyser = mixer?.analyser("listen");
    return analyser ? analyse(analyser, mixer.context.sampleRate) : null;
  },
  get onAir() {
    return amOnAir();
  },
  get coughing() {
    return coughing;
  },
  /** The listening chain, input to speakers, as node names (the limiter must be in it). */
  graph() {
    return mixer ? mixer.graph() : null;
  },
  /** The peak (1 = 0 dBFS) of what reaches the headphones, after the limiter. */
  outputPeak() {
    return mixer ? peakLevel(mixer.output) : null;
  },
  get publisherState() {
    return publisher?.connectionState ?? "none";
  },
  get state() {
    return view.state;
  },
};

connection = startConsole({ onWelcome, onMessage });
loadProgram().then((program) => {
  view.program = program;
  render();
});
