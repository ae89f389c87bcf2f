// The attendee's page: program video, the chosen language channel, the original
// mixed underneath at the attendee's volume, and what is going on. The player's
// controls, menu and cards are player.js's; this module brings the media (WebRTC
// from the node) and says what to show from the live state.

import { loadProgram, mediaRestoring, startConsole } from "./page.js";
import { localized, t } from "/static/common/i18n.js";
import { answerServerOffer, MediaKeeper, rtcConfiguration, slotOfTransceiver } from "./peer.js";
import { analyse, Mixer, peakLevel, recentFrequency } from "./sound.js";
import { channelView, clockOffsetMs, onAirSpeakerId } from "./live.js";
import { languageName, renderProgram, speakerById } from "./program.js";
import { ORIGINAL, Player } from "./player.js";
import { hlsFallback } from "./hls_fallback.js";

const view = {
  welcome: null,
  summary: null, // the event as the welcome describes it: languages, booths
  program: null, // the whole program (sessions, speakers) from the HTTP API
  state: null,
  // The channel shown and heard; null until the server has told us its default.
  channel: null,
  // A choice of ours the server has not confirmed yet (it wins over the server's view).
  pendingChannel: null,
  // The original under the interpretation: 0 = not wanted, else its volume (0..1).
  originalUnder: 0,
  audioOnly: false,
  // Someone was on air since the page opened: nobody on air now is a pause, not the wait
  // before the start.
  seenOnAir: false,
};
let connection = null;
let pc = null;
let mixer = null;
let listening = { volume: 1, muted: false };
const received = new Map(); // "channel" | "floor" | "video" -> MediaStreamTrack
const mids = new Map(); // the same names -> the m-line they arrive on
const debug = { firstAudioAt: null, offers: 0, welcomes: 0, marks: {} };
// After a network outage: a new subscription (the WebSocket may have stayed up all along).
const media = new MediaKeeper({
  renew: () => {
    if (hls.active) return; // HLS fallback: WebRTC is not tried again
    closePeer(); // an answer still on its way would otherwise be taken for the new offer's
    connection.send({ type: "subscribe" });
  },
  onRestoring: (restoring) => mediaRestoring("program", restoring),
});

const player = new Player({
  onPlay: play,
  onChannel: chooseChannel,
  onOriginalUnder: setOriginalUnder,
  onAudioOnly: setAudioOnly,
  onSign: (booth) => connection?.send({ type: "select_sign", booth }),
  onVolume: (volume, muted) => {
    listening = { volume, muted };
    if (mixer) mixer.setMasterVolume(muted ? 0 : volume);
  },
});
const video = player.video;
// HLS fallback (hls_fallback.js): when WebRTC cannot connect, or DRAGOMAN_DELIVERY=hls.
const hls = hlsFallback({
  video,
  onChange: () => {
    if (hls.active) closePeer();
    render();
  },
});

/**
 * For another media source (e.g. an HLS fallback, in its own module): the same player
 * instance (ES modules are loaded once per page), and the channel the person chose.
 */
export { player };
export function chosenChannel() {
  return view.channel;
}

/** Notes when a step of joining first happened (ms since navigation start), for bench/join.py. */
function mark(name) {
  if (!(name in debug.marks)) debug.marks[name] = performance.now();
}

function onWelcome(welcome, again) {
  debug.welcomes += 1;
  mark("welcome");
  view.welcome = welcome;
  view.summary = welcome.event;
  if (view.channel !== null) {
    // A new connection starts from the server's defaults: restore our choices first.
    view.pendingChannel = view.channel;
    connection.send({ type: "select_channel", language: view.channel });
    connection.send({ type: "set_original_under", on: view.originalUnder > 0 });
    connection.send({ type: "set_audio_only", on: view.audioOnly });
  }
  closePeer();
  if (!hls.active) connection.send({ type: "subscribe" }); // HLS fallback hook
  render();
}

function closePeer() {
  if (pc) pc.close();
  pc = null;
  received.clear();
  mids.clear();
}

/** Which of the page's inputs a server slot feeds: the floor under the channel is "original". */
function role(slot, track) {
  if (slot?.name === "sign") return "sign";
  if (track.kind === "video") return "video";
  return slot?.name === "original" || slot?.name === "floor" ? "floor" : "channel";
}

async function onOffer(message) {
  if (hls.active) return; // HLS fallback hook
  closePeer();
  debug.offers += 1;
  mark("offer");
  const peer = new RTCPeerConnection(rtcConfiguration(view.welcome));
  pc = peer;
  media.watch(peer);
  hls.watchPeer(peer); // HLS fallback hook
  peer.addEventListener("track", (event) => {
    const name = role(slotOfTransceiver(message.slots, event.transceiver), event.track);
    received.set(name, event.track);
    mids.set(name, event.transceiver.mid);
    attachTrack(name, event.track);
  });
  const answer = await answerServerOffer(peer, message.sdp);
  if (pc !== peer) return;
  mark("answer");
  peer.addEventListener("connectionstatechange", () => {
    if (peer.connectionState === "connected") mark("connected");
  });
  connection.send({ type: "answer", purpose: "subscribe", sdp: answer });
}

function attachTrack(name, track) {
  if (name === "sign") {
    player.signVideo.srcObject = new MediaStream([track]);
    player.signVideo.play().catch(() => {});
    return;
  }
  if (name === "video") {
    video.srcObject = new MediaStream([track]);
    video.play().catch(() => {});
    return;
  }
  if (name === "channel") {
    track.addEventListener(
      "unmute",
      () => {
        if (debug.firstAudioAt === null) debug.firstAudioAt = performance.now();
        mark("first_packet");
      },
      { once: true },
    );
  }
  if (mixer) mixer.attach(name, track, volumeOf(name));
}

function volumeOf(name) {
  if (name === "floor") return view.channel === ORIGINAL ? 0 : view.originalUnder;
  return 1;
}

async function play() {
  if (!mixer) mixer = new Mixer();
  mixer.setMasterVolume(listening.muted ? 0 : listening.volume);
  await mixer.resume();
  for (const [name, track] of received) if (track.kind === "audio") mixer.attach(name, track, volumeOf(name));
  video.play().catch(() => {});
  if (hls.active) hls.play(); // HLS fallback hook
}

function chooseChannel(code) {
  if (code === view.channel) return;
  view.channel = code;
  view.pendingChannel = code;
  connection?.send({ type: "select_channel", language: code });
  hls.select(code); // HLS fallback hook
  if (mixer) mixer.setVolume("floor", volumeOf("floor"));
  render();
}

function setOriginalUnder(volume) {
  const wasOn = view.originalUnder > 0;
  view.originalUnder = volume;
  if (mixer) mixer.setVolume("floor", volumeOf("floor"));
  // Not wanted: the server stops sending the floor at all, no bandwidth for what nobody hears.
  if (wasOn !== volume > 0) connection?.send({ type: "set_original_under", on: volume > 0 });
}

function setAudioOnly(enabled) {
  view.audioOnly = enabled;
  connection?.send({ type: "set_audio_only", on: enabled });
}

function onMessage(message) {
  if (message.type === "state") {
    view.state = message;
    const you = message.you;
    if (you && typeof you.channel === "string") {
      // The choice belongs to the person: another tab of the same link may change it.
      if (view.pendingChannel === null) view.channel = you.channel;
      else if (you.channel === view.pendingChannel) view.pendingChannel = null;
      if (mixer) mixer.setVolume("floor", volumeOf("floor"));
    }
    if (onAirSpeakerId(message)) view.seenOnAir = true;
    render();
  } else if (message.type === "offer") {
    onOffer(message);
  }
}

function render() {
  const event = view.program ?? view.summary;
  if (!event) return;
  const title = localized(event.title);
  document.getElementById("event-title").textContent = title;
  document.title = `${title} — ${t("watch.title_suffix")}`;
  player.setLanguages(event.languages.map((item) => ({ code: item.code, name: item.name, lang: item.code })));
  if (view.channel !== null) player.setChannel(view.channel);
  renderCard(event);
  renderNowSpeaking(event);
  renderSignChoice(event);
  renderChannelCarries(event);
  renderDelivery(); // HLS fallback hook
  if (view.program) {
    renderProgram(
      document.getElementById("program"),
      view.program,
      view.state?.session ?? null,
      null,
      onAirSpeakerId(view.state),
    );
  }
}

/**
 * What stands in for the picture: the waiting room until someone first goes on air
 * (unless a session already runs), a card when the speaker goes off air or his media
 * is lost: never a frozen last frame.
 */
function renderCard(event) {
  const state = view.state;
  const onAir = onAirSpeakerId(state);
  let card = null;
  if (onAir) card = state.on_air.media_live === false ? "media-lost" : null;
  else if (!view.seenOnAir && !state?.session) card = "waiting";
  else card = "off-air";
  if (event.starts_at_utc) player.setWaiting(localized(event.title), event.starts_at_utc, clockOffsetMs(state));
  player.showCard(card);
  document.body.dataset.card = card ?? "";
}

function renderNowSpeaking(event) {
  const target = document.getElementById("now-speaking");
  const id = onAirSpeakerId(view.state);
  const speaker = speakerById(event, id);
  if (!id) {
    target.textContent = t("watch.nobody_speaking");
    return;
  }
  target.replaceChildren();
  const name = document.createElement("strong");
  name.textContent = speaker?.name ?? id;
  target.append(name);
  if (speaker) target.append(" — ", localized(speaker.affiliation));
  // The floor language: the moderator may say he speaks another one than the program's.
  const spoken = view.state.on_air.language ?? speaker?.language;
  target.append(" · ", t("console.speaks", { language: spokenName(spoken, event) }));
}

/** A language named in a sentence: in the page's language when the catalog knows it. */
function spokenName(code, event) {
  const key = `language.${String(code).split("-")[0]}`;
  const known = t(key);
  return known !== key ? known : languageName(event, code);
}

/** Sign language over the program video, in events with sign booths. */
function renderSignChoice(event) {
  const booths = (view.summary?.booths ?? event.booths ?? []).filter((booth) => booth.kind === "sign");
  player.setSignBooths(
    booths.map((booth) => [booth.id, booth.name]),
    view.state?.you?.sign ?? null,
    Boolean(view.state?.you?.audio_only),
  );
}

function renderChannelCarries(event) {
  const target = document.getElementById("channel-carries");
  if (view.channel === null) {
    target.textContent = "";
    return;
  }
  if (view.channel === ORIGINAL) {
    target.textContent = t("watch.carries_original_chosen");
    return;
  }
  const channel = channelView(view.state, view.channel);
  const name = spokenName(view.channel, event);
  target.dataset.kind = channel?.kind ?? "";
  if (!channel) target.textContent = "";
  else if (channel.reason === "no_speaker") target.textContent = t("watch.nobody_speaking");
  else if (channel.kind === "interpreter") target.textContent = t("watch.carries_interpretation", { language: name });
  else if (channel.reason === "cough") target.textContent = t("watch.carries_cough");
  else if (channel.kind === "floor" && channel.reason === "speaker_language")
    target.textContent = t("watch.carries_original_same", { language: name });
  else if (channel.kind === "floor") target.textContent = t("watch.carries_floor_fallback");
  else target.textContent = t("watch.carries_silence");
}

/** Over HLS: say so (a few seconds behind the room), and no original under a channel. */
function renderDelivery() {
  const notice = document.getElementById("delivery-notice");
  notice.hidden = !hls.active;
  if (!hls.active) return;
  const key = hls.status === "not_live" ? "watch.hls_not_live" : `watch.hls_${hls.reason}`;
  notice.textContent = t(key);
  // One rendition plays at a time: nothing to put under it.
  player.originalUnder.checked = false;
  player.originalUnder.disabled = true;
  player.showOriginalVolume();
  if (view.channel) hls.select(view.channel);
}

// What the page really receives, for the end-to-end tests and bench/join.py.
window.dragomanDebug = {
  /** {frequency, rms, peakDb} of what arrives on "channel" or "floor", or null. */
  analyse(name = "channel") {
    if (hls.active) return name === "channel" ? hls.analyse(analyse) : null; // HLS fallback hook
    const analyser = mixer?.analyser(name);
    return analyser ? analyse(analyser, mixer.context.sampleRate) : null;
  },
  /** The listening chain, input to speakers, as node names (a limiter before the speakers). */
  graph() {
    return mixer ? mixer.graph() : null;
  },
  /** The peak (1 = 0 dBFS) of what reaches the speakers, after the limiter. */
  outputPeak() {
    return mixer ? peakLevel(mixer.output) : null;
  },
  dominantFrequency(name = "channel") {
    return this.analyse(name)?.frequency ?? null;
  },
  /** {frequency, rms} over the last ~21 ms only (zero crossings): for timing switches. */
  recent(name = "channel") {
    const analyser = mixer?.analyser(name);
    return analyser ? recentFrequency(analyser, mixer.context.sampleRate) : null;
  },
  get firstAudioAt() {
    return debug.firstAudioAt;
  },
  get offers() {
    return debug.offers;
  },
  /** New subscriptions asked for after the network was lost. */
  get restorations() {
    return media.tries;
  },
  get marks() {
    return { ...debug.marks };
  },
  get welcomes() {
    return debug.welcomes;
  },
  get channel() {
    return view.channel;
  },
  /** "webrtc", or "hls" with the audio rendition playing (HLS fallback). */
  get delivery() {
    return hls.active ? { kind: "hls", status: hls.status, rendition: hls.rendition, renditions: hls.renditions } : { kind: "webrtc" };
  },
  get peerState() {
    return pc?.connectionState ?? "none";
  },
  get state() {
    return view.state;
  },
  /** Packets received per m-line: [{mid, kind, packetsReceived, bytesReceived}]. */
  async received() {
    if (!pc) return [];
    const report = await pc.getStats();
    const rows = [];
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp") {
        rows.push({ mid: entry.mid, kind: entry.kind, packetsReceived: entry.packetsReceived, bytesReceived: entry.bytesReceived });
      }
    });
    return rows;
  },
  get slots() {
    return [...received.entries()].map(([name, track]) => ({ name, mid: mids.get(name), kind: track.kind, muted: track.muted }));
  },
};

connection = startConsole({ onWelcome, onMessage });
hls.configure().then((everyone) => everyone && hls.start("chosen", view.channel)); // HLS fallback hook
loadProgram().then((program) => {
  view.program = program;
  render();
});
