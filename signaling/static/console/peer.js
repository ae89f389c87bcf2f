// WebRTC with the Dragoman server. The server's peers do not trickle ICE, so
// both directions wait for gathering to complete and exchange whole SDPs.
// No STUN or TURN server is used unless the server's welcome names some.

const GATHERING_TIMEOUT_MS = 5000;

/**
 * RTCConfiguration from the welcome message's ICE servers (none by default): each is
 * `{urls, username?, credential?}`, a TURN server's credentials made for this page and
 * valid for a limited time (a page reconnecting gets a fresh welcome, so fresh ones).
 */
export function rtcConfiguration(welcome) {
  const servers = welcome.ice_servers ?? [];
  return {
    iceServers: servers.map(({ urls, username, credential }) =>
      username === undefined ? { urls } : { urls, username, credential },
    ),
  };
}

/** Resolves once ICE gathering is complete (or after a timeout: what we have will do). */
export function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, GATHERING_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * Receiving side: the server offers the outputs; we answer.
 * Returns the answer SDP, complete with candidates.
 */
export async function answerServerOffer(pc, offerSdp) {
  await pc.setRemoteDescription({ type: "offer", sdp: offerSdp });
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  await gatheringComplete(pc);
  return pc.localDescription.sdp;
}

/**
 * Sending side: we offer our tracks (send only) and the server answers.
 * Returns the offer SDP, complete with candidates.
 */
export async function offerTracks(pc, stream) {
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gatheringComplete(pc);
  return pc.localDescription.sdp;
}

/**
 * The slot (as the server's offer lists them: [{name, kind, output, mid}]) a
 * received track belongs to, found by the m-line's mid.
 */
export function slotOfTransceiver(slots, transceiver) {
  const slot = (slots ?? []).find((item) => item.mid !== null && String(item.mid) === String(transceiver.mid));
  return slot ?? null;
}

/** Microphone constraints: interpreters and speakers use headsets or desk
 * microphones; browser voice processing would colour the voice and can eat
 * steady sounds, so it is left off. */
export function microphoneConstraints(deviceId) {
  const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  if (deviceId) audio.deviceId = { exact: deviceId };
  return audio;
}

// Chromium says "disconnected" only after several unanswered checks, well
// after a network is gone (more than 5 s): the page listens itself. While media
// flows, something arrives many times a second: this long without anything and
// the network is taken for lost.
const SILENT_FOR_MS = 3000;
// With nobody on air, no media flows either way: only the server's reports
// (every 0.5 to 1.5 s per track) and the answers to connectivity checks arrive,
// and a busy server sends them late. Nothing is lost by waiting longer, while
// a working connection replaced for nothing costs a new one on the server.
const QUIET_SILENT_FOR_MS = 6500;
// The connection is quiet when the last thing heard came this long after the
// last media packet sent or received.
const QUIET_GAP_MS = 2000;
const LISTEN_EVERY_MS = 500;
// While the network is lost, a new connection is tried this often, a little
// less often each time (a loaded machine may need longer to connect one).
// A try stays young enough that its connectivity checks still run briskly
// when the network returns, so that the first one after it connects.
const FIRST_TRY_MS = 1500;
const MAX_TRY_MS = 3000;

/**
 * What the connection has received so far, or null: `any` changes whenever
 * anything arrives (media, RTCP, connectivity checks and their answers), `media`
 * whenever a media packet arrives or leaves.
 */
async function arrivals(pc) {
  const report = await pc.getStats();
  const any = [];
  let media = 0;
  report.forEach((entry) => {
    if (entry.type === "inbound-rtp") media += entry.packetsReceived ?? 0;
    else if (entry.type === "outbound-rtp") media += entry.packetsSent ?? 0;
    if (entry.type !== "transport" || !entry.selectedCandidatePairId) return;
    const pair = report.get(entry.selectedCandidatePairId);
    if (!pair) return;
    any.push(pair.lastPacketReceivedTimestamp, pair.bytesReceived, pair.responsesReceived, pair.requestsReceived);
  });
  return any.length > 0 ? { any: any.join("/"), media } : null;
}

/**
 * Keeps one media connection of a page (a subscription or a publication)
 * alive across network outages. The server (aiortc) cannot restart ICE, and a
 * connection whose network changed under it never comes back: once the peer
 * connection in use has heard nothing for a while, or has failed, `renew()`
 * replaces it (the page asks for a new subscription, or publishes again, and
 * hands the new peer connection to `watch`), and again every 1.5 to 3 s until
 * one is connected. `onRestoring(true|false)` tells the page when media is
 * lost and when it is back.
 */
export class MediaKeeper {
  constructor({ renew, onRestoring }) {
    this.renew = renew;
    this.onRestoring = onRestoring;
    this.pc = null;
    this.restoring = false;
    this.timer = null;
    this.listener = null;
    this.tryMs = FIRST_TRY_MS;
    this.tries = 0;
    this.arrived = null;
    this.heardAt = 0;
    this.mediaAt = 0;
  }

  /** The peer connection now in use; each new one is handed over here. */
  watch(pc) {
    this.pc = pc;
    this.arrived = null;
    this.heardAt = this.mediaAt = performance.now();
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === "connected") this.recovered();
      else if (pc.connectionState === "failed" || pc.connectionState === "disconnected") this.lost();
    });
    if (this.listener === null) this.listener = setInterval(() => this.listen(), LISTEN_EVERY_MS);
  }

  async listen() {
    const pc = this.pc;
    if (pc === null || pc.connectionState !== "connected") return;
    let arrived;
    try {
      arrived = await arrivals(pc);
    } catch {
      return; // closed meanwhile
    }
    if (pc !== this.pc) return;
    const now = performance.now();
    if (arrived !== null && arrived.any !== this.arrived?.any) {
      if (arrived.media !== this.arrived?.media) this.mediaAt = now;
      this.arrived = arrived;
      this.heardAt = now;
      this.recovered();
    } else if (now - this.heardAt > (this.quiet() ? QUIET_SILENT_FOR_MS : SILENT_FOR_MS)) {
      this.lost();
    }
  }

  /** No media flows: a longer silence is still a live network. */
  quiet() {
    return this.heardAt - this.mediaAt > QUIET_GAP_MS;
  }

  lost() {
    // While restoring, a try that fails waits for its turn: tries keep their pace.
    if (this.restoring) return;
    this.restoring = true;
    this.onRestoring(true);
    this.retry();
  }

  retry() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.restoring) return;
    this.tries += 1;
    this.renew();
    const wait = this.tryMs;
    this.tryMs = Math.min(this.tryMs + 500, MAX_TRY_MS);
    this.timer = setTimeout(() => this.retry(), wait);
  }

  recovered() {
    clearTimeout(this.timer);
    this.timer = null;
    this.tryMs = FIRST_TRY_MS;
    if (!this.restoring) return;
    this.restoring = false;
    this.onRestoring(false);
  }

  /** Nothing to keep any more. */
  stop() {
    clearTimeout(this.timer);
    clearInterval(this.listener);
    this.timer = this.listener = null;
    this.pc = null;
    if (this.restoring) {
      this.restoring = false;
      this.onRestoring(false);
    }
  }
}
