// The speaker's page: choose camera and microphone, join (publish), see
// oneself, know without doubt when the moderator has put you on air, and see
// when a booth asks you to slow down.

import { loadProgram, mediaRestoring, setOptions, startConsole } from "./page.js";
import { localized, t } from "/static/common/i18n.js";
import { MediaKeeper, microphoneConstraints, offerTracks, rtcConfiguration } from "./peer.js";
import { clockOffsetMs, onAirSpeakerId, slowDownRequests } from "./live.js";
import { speakerById } from "./program.js";

const view = {
  welcome: null,
  summary: null,
  program: null,
  state: null,
  speakerId: null,
  joined: false,
  clockOffset: 0,
};
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
  // Labels only appear once the browser has been allowed the devices.
  await listDevices();
}

async function join() {
  joinButton.disabled = true;
  try {
    await openDevices();
  } catch (error) {
    document.getElementById("stage-status").textContent = t("stage.no_devices", { error: error.message });
    joinButton.disabled = false;
    return;
  }
  view.joined = true;
  await publish();
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
  if (!view.joined) return;
  await openDevices();
  await publish();
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
  const live = view.speakerId !== null && onAirSpeakerId(view.state) === view.speakerId;
  const indicator = document.getElementById("on-air");
  indicator.dataset.onAir = String(live);
  indicator.textContent = live ? t("stage.on_air") : view.joined ? t("stage.standing_by") : t("stage.not_joined");
  renderSlowDown(live);
  joinButton.hidden = view.joined;
  document.getElementById("stage-status").textContent = view.joined ? t("stage.joined") : t("stage.join_hint");
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
setInterval(() => renderSlowDown(view.speakerId !== null && onAirSpeakerId(view.state) === view.speakerId), 1000);
cameraSelect.addEventListener("change", onDeviceChange);
micSelect.addEventListener("change", onDeviceChange);
listDevices().catch(() => {});

window.dragomanDebug = {
  get publisherState() {
    return publisher?.connectionState ?? "none";
  },
  /** Publications made anew after the network was lost. */
  get restorations() {
    return media.tries;
  },
};

connection = startConsole({ onWelcome, onMessage });
loadProgram().then((program) => {
  view.program = program;
  render();
});
