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

/**
 * Calls `renegotiate` when a peer connection fails for good (ICE could not
 * recover) while the WebSocket is still up: the page then asks for a fresh
 * offer (subscriber) or publishes again (publisher).
 */
export function whenFailed(pc, renegotiate) {
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed") renegotiate();
  });
}
