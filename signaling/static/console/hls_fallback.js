// The attendee's page over HLS: when WebRTC cannot connect (a network that lets no UDP
// nor TURN through), or for everyone when the organizer chose DRAGOMAN_DELIVERY=hls.
// The program video plays from /hls/index.m3u8 with the chosen language's audio
// rendition; choosing another language switches the rendition (no reload). hls.js
// (vendored, /static/vendor/hls.js/) is imported only when this starts; a browser
// without Media Source Extensions but with HLS of its own (Safari) plays it natively.
// The WebSocket stays: the page still shows who speaks and what each channel carries.

import { pageToken } from "/static/common/api.js";

/** Without a connected peer this long after the server's offer, WebRTC is given up
 * (the node's DRAGOMAN_WEBRTC_FALLBACK_S, from /api/delivery; this until it is known). */
export const FALLBACK_AFTER_S = 10;
const RETRY_MS = 4_000;
const ORIGINAL = "original";

/**
 * @param {{video: HTMLVideoElement, onChange: () => void}} options
 *   `onChange` is called when HLS starts or its status changes (the page re-renders).
 */
export function hlsFallback({ video, onChange }) {
  let delivery = null; // {delivery, hls, hls_public, webrtc_fallback_s} from /api/delivery
  let player = null; // an Hls instance, or "native"
  let language = ORIGINAL;
  let timer = null;
  let analyser = null;
  let audioContext = null;

  const state = {
    /** True once the page plays HLS instead of WebRTC. */
    active: false,
    /** Why: "chosen" (DRAGOMAN_DELIVERY=hls) or "webrtc_failed". */
    reason: null,
    /** "loading", "playing", "not_live" (no session in progress yet). */
    status: null,

    /** Reads the node's delivery setting; true when the organizer chose HLS for all. */
    async configure() {
      try {
        const response = await fetch("/api/delivery", { credentials: "same-origin" });
        delivery = response.ok ? await response.json() : null;
      } catch {
        delivery = null;
      }
      return delivery?.delivery === "hls";
    },

    /** Gives WebRTC the node's fallback time to connect this peer, then plays HLS instead. */
    watchPeer(peer) {
      clearTimeout(timer);
      const giveUp = () => {
        clearTimeout(timer);
        if (peer.connectionState !== "connected" && !state.active) state.start("webrtc_failed");
      };
      timer = setTimeout(giveUp, 1000 * (delivery?.webrtc_fallback_s ?? FALLBACK_AFTER_S));
      peer.addEventListener("connectionstatechange", () => {
        if (peer.connectionState === "connected") clearTimeout(timer);
        else if (peer.connectionState === "failed") giveUp();
      });
    },

    async start(reason, channel = language) {
      if (state.active) return;
      state.active = true;
      state.reason = reason;
      language = channel ?? ORIGINAL;
      if (!delivery) await state.configure();
      video.srcObject = null;
      await load();
      onChange();
    },

    /** The attendee chose a language: switch the audio rendition. */
    select(code) {
      language = code;
      applyLanguage();
    },

    /** After the page's Play button (a user gesture): sound on. */
    play() {
      video.muted = false;
      video.play().catch(() => {});
      listen();
    },

    /** {frequency, rms} of what plays, for the tests (as the WebRTC path's analysis). */
    analyse(analyseNode) {
      return analyser && audioContext ? analyseNode(analyser, audioContext.sampleRate) : null;
    },

    get renditions() {
      if (player && player !== "native") return player.audioTracks.map((track) => track.lang || ORIGINAL);
      return [];
    },

    get rendition() {
      if (player && player !== "native") {
        const track = player.audioTracks[player.audioTrack];
        return track ? track.lang || ORIGINAL : null;
      }
      return null;
    },
  };

  function url() {
    const base = delivery?.hls ?? "/hls/index.m3u8";
    const token = pageToken();
    return delivery?.hls_public || !token ? base : `${base}?token=${encodeURIComponent(token)}`;
  }

  function setStatus(status) {
    if (state.status === status) return;
    state.status = status;
    onChange();
  }

  async function load() {
    setStatus("loading");
    const { default: Hls } = await import("/static/vendor/hls.js/hls.min.mjs");
    if (Hls.isSupported()) {
      const hls = new Hls({
        // The page's Content-Security-Policy allows no blob: workers.
        enableWorker: false,
        // The node's playlists list ~0.5 s parts and block until the next one exists:
        // at the live edge the player stays PART-HOLD-BACK (1.5 s) behind the room.
        lowLatencyMode: true,
        liveSyncDurationCount: 2,
        liveMaxLatencyDurationCount: 6,
      });
      player = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        applyLanguage();
        video.play().catch(() => {});
      });
      hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, applyLanguage);
      hls.on(Hls.Events.FRAG_BUFFERED, () => setStatus("playing"));
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
          return;
        }
        // Nothing live yet (404), or the network: start again a little later.
        setStatus(data.response?.code === 404 ? "not_live" : "loading");
        hls.destroy();
        player = null;
        setTimeout(() => state.active && load(), RETRY_MS);
      });
      hls.loadSource(url());
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      player = "native";
      video.src = url();
      video.addEventListener("loadedmetadata", applyLanguage, { once: true });
      video.addEventListener("playing", () => setStatus("playing"));
      video.play().catch(() => {});
    }
  }

  function applyLanguage() {
    if (!player) return;
    if (player === "native") {
      const tracks = video.audioTracks ?? [];
      for (let i = 0; i < tracks.length; i += 1) {
        const code = tracks[i].language || ORIGINAL;
        tracks[i].enabled = code === language;
      }
      return;
    }
    const index = player.audioTracks.findIndex((track) => (track.lang || ORIGINAL) === language);
    if (index >= 0 && player.audioTrack !== index) player.audioTrack = index;
  }

  /** An analyser on what the element plays (Chromium: captureStream), never to the speakers. */
  function listen() {
    if (audioContext || typeof video.captureStream !== "function") return;
    const attach = () => {
      const track = video.captureStream().getAudioTracks()[0];
      if (!track) return false;
      audioContext = new AudioContext();
      const source = audioContext.createMediaStreamSource(new MediaStream([track]));
      analyser = audioContext.createAnalyser();
      analyser.fftSize = 8192;
      analyser.smoothingTimeConstant = 0;
      source.connect(analyser);
      return true;
    };
    // The element has an audio track to capture only once it plays the rendition.
    const poll = setInterval(() => {
      if (!state.active || attach()) clearInterval(poll);
    }, 250);
  }

  return state;
}
