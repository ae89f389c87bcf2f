// The speaker's page: see oneself and one's microphone level before joining,
// choose camera and microphone by name, join (publish), mute, leave, know
// without doubt when the moderator has put you on air and for how long, and see
// when a booth asks you to slow down.

import { formatDuration, loadProgram, mediaRestoring, setOptions, startConsole } from "./page.js";
import { localized, t } from "/static/common/i18n.js";
import { MediaKeeper, microphoneConstraints, offerTracks, rtcConfiguration } from "./peer.js";
import { clockOffsetMs, onAirSpeakerId, slowDownRequests } from "./live.js";
import { speakerById } from "./program.js";
import { localAnalyser, meterLevel } from "./sound.js";

const view = {
  welcome: null,
  summary: null,
  program: null,
  state: null,
  speakerId: null,
  joined: false,
  muted: false,
  left: false,
  deviceProblem: null,
  seat: null, // "refused", "waiting" (asked to take over) or null: see seat.js
  onAirSince: null, // server clock, seconds: when this page first saw the speaker on air
  clockOffset: 0,
};
let audioContext = null;
let meterAnalyser = null;
let connection = null;
let stream = null;
let publisher = null;
// After a network outage: publish anew (the server puts the new tracks where the old ones were).
const media = new MediaKeeper({
  renew: () => publish(),
  onRestoring: (restoring) => mediaRestoring("tracks", restoring),
});

const joinButton = document.getElementById("join");
const cameraSelect = document.getElementById("camera");
const micSelect = document.getElementById("microphone-device");
const preview = document.getElementById("preview");
const muteButton = document.getElementById("mute");
const leaveButton = document.getElementById("leave");

function onWelcome(welcome) {
  view.welcome = welcome;
  view.summary = welcome.event;
  view.speakerId = welcome.scope?.speaker ?? null;
  render();
  // After a reconnection the server has forgotten our tracks: publish again.
  if (view.joined) publish();
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  fill(cameraSelect, devices.filter((d) => d.kind === "videoinput"), "stage.camera_n");
  fill(micSelect, devices.filter((d) => d.kind === "audioinput"), "stage.microphone_n");
}

function fill(select, devices, key) {
  const chosen = select.value;
  setOptions(select, devices.map((device, index) => [device.deviceId, device.label || t(key, { n: index + 1 })]));
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

async function openDevices() {
  for (const track of stream?.getTracks() ?? []) track.stop();
  const video = cameraSelect.value ? { deviceId: { exact: cameraSelect.value } } : true;
  stream = await navigator.mediaDevices.getUserMedia({
    audio: microphoneConstraints(micSelect.value || undefined),
    video,
  });
  preview.srcObject = stream;
  preview.play().catch(() => {});
  for (const track of stream.getAudioTracks()) track.enabled = !view.muted;
  startMeter();
  view.deviceProblem = null;
  // Labels only appear once the browser has been allowed the devices.
  await listDevices();
}

/** The microphone meter, from the moment the devices open (before joining too). */
function startMeter() {
  if (!audioContext) audioContext = new AudioContext();
  audioContext.resume().catch(() => {});
  meterAnalyser = localAnalyser(audioContext, stream);
  if (startMeter.running) return;
  startMeter.running = true;
  const meter = document.getElementById("mic-meter");
  const tick = () => {
    meter.value = meterAnalyser && stream && !view.muted ? meterLevel(meterAnalyser) : 0;
    requestAnimationFrame(tick);
  };
  tick();
}

/** Preview before joining: the speaker checks picture and level first. */
async function openPreview() {
  try {
    await openDevices();
  } catch (error) {
    view.deviceProblem = error.message;
  }
  render();
}

async function join() {
  joinButton.disabled = true;
  if (!stream || stream.getTracks().some((track) => track.readyState === "ended")) {
    try {
      await openDevices();
    } catch (error) {
      view.deviceProblem = error.message;
      joinButton.disabled = false;
      render();
      return;
    }
  }
  view.joined = true;
  view.left = false;
  joinButton.disabled = false;
  await publish();
  render();
}

/** Stop sending: the moderator can no longer put this speaker on air. */
function leave() {
  view.joined = false;
  view.left = true;
  if (publisher) publisher.close();
  publisher = null;
  connection?.send({ type: "leave_stage" });
  for (const track of stream?.getTracks() ?? []) track.stop();
  stream = null;
  preview.srcObject = null;
  meterAnalyser = null;
  render();
}

function setMuted(muted) {
  view.muted = muted;
  for (const track of stream?.getAudioTracks() ?? []) track.enabled = !muted;
  render();
}

async function publish() {
  if (publisher) publisher.close();
  publisher = null;
  if (!stream || !connection?.online) return;
  const peer = new RTCPeerConnection(rtcConfiguration(view.welcome));
  publisher = peer;
  media.watch(peer);
  const offer = await offerTracks(peer, stream);
  if (publisher !== peer) return;
  connection.send({ type: "offer", purpose: "publish", sdp: offer });
}

async function onDeviceChange() {
  if (!view.joined && view.left) return;
  try {
    await openDevices();
  } catch (error) {
    view.deviceProblem = error.message;
    render();
    return;
  }
  if (view.joined) await publish();
  render();
}

function onMessage(message) {
  if (message.type === "state") {
    view.state = message;
    view.clockOffset = clockOffsetMs(message);
    render();
  } else if (message.type === "answer" && publisher?.signalingState === "have-local-offer") {
    // The answer to an offer that a newer one replaced meanwhile (after a network outage)
    // finds the new peer waiting for its own answer: that try fails and the next one is made.
    publisher.setRemoteDescription({ type: "answer", sdp: message.sdp }).catch(() => {});
  }
}

function render() {
  const event = view.program ?? view.summary;
  if (!event) return;
  const me = speakerById(view.program, view.speakerId);
  document.getElementById("speaker-name").textContent = me ? me.name : localized(event.title);
  const live = isLive();
  if (live && view.onAirSince === null) view.onAirSince = serverNow();
  if (!live) view.onAirSince = null;
  const indicator = document.getElementById("on-air");
  indicator.dataset.onAir = String(live);
  indicator.dataset.muted = String(live && view.muted);
  indicator.textContent = live
    ? t(view.muted ? "stage.on_air_muted" : "stage.on_air")
    : view.joined
      ? t("stage.standing_by")
      : t("stage.not_joined");
  renderSlowDown(live);
  renderTimeOnAir();
  joinButton.hidden = view.joined;
  muteButton.hidden = !view.joined;
  leaveButton.hidden = !view.joined;
  muteButton.setAttribute("aria-pressed", String(view.muted));
  // One sentence that says what the page shows: never "connected" while it is not.
  const status = view.deviceProblem
    ? t("stage.no_devices", { error: view.deviceProblem })
    : view.seat === "waiting"
      ? t("stage.waiting_for_seat")
      : view.joined
      ? live
        ? t(view.muted ? "stage.status_on_air_muted" : "stage.status_on_air")
        : view.muted
          ? t("stage.muted")
          : t("stage.joined")
      : view.left
        ? t("stage.left")
        : stream
          ? t("stage.previewing")
          : t("stage.join_hint");
  const line = document.getElementById("stage-status");
  if (line.textContent !== status) line.textContent = status;
}

/** On air as the server says, unless this page has just left (he is then not heard). A second
 * tab of the same link that never joined still shows it: it is the same person. */
function isLive() {
  return view.speakerId !== null && !view.left && onAirSpeakerId(view.state) === view.speakerId;
}

function serverNow() {
  return (Date.now() + view.clockOffset) / 1000;
}

function renderTimeOnAir() {
  const seconds = view.onAirSince === null ? 0 : serverNow() - view.onAirSince;
  document.getElementById("time-on-air").textContent = formatDuration(seconds);
}

/** "Please slow down" while a booth asks it (the server sends requests only to the speaker on air). */
function renderSlowDown(live) {
  const nowS = (Date.now() + view.clockOffset) / 1000;
  const asked = live && slowDownRequests(view.state, nowS).length > 0;
  const notice = document.getElementById("slow-down");
  const words = asked ? t("stage.slow_down") : "";
  // Rewriting the same words would make a screen reader announce the alert again.
  if (notice.textContent !== words) notice.textContent = words;
}

joinButton.addEventListener("click", join);
leaveButton.addEventListener("click", leave);
muteButton.addEventListener("click", () => setMuted(!view.muted));
setInterval(() => {
  renderSlowDown(isLive());
  renderTimeOnAir();
}, 1000);
cameraSelect.addEventListener("change", onDeviceChange);
micSelect.addEventListener("change", onDeviceChange);
listDevices()
  .catch(() => {})
  .then(openPreview);

window.dragomanDebug = {
  get publisherState() {
    return publisher?.connectionState ?? "none";
  },
  /** Publications made anew after the network was lost. */
  get restorations() {
    return media.tries;
  },
  get micLevel() {
    return Number(document.getElementById("mic-meter").value);
  },
};

connection = startConsole({
  onWelcome,
  onMessage,
  onSeat: (seat) => {
    view.seat = seat;
    render();
  },
});
loadProgram().then((program) => {
  view.program = program;
  render();
});
