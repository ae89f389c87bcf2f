// What the listener hears, built with WebAudio: the chosen channel at full
// volume, the floor (original) mixed under it at the listener's volume, and
// analysers on what is actually received (also used by the VU meters).
//
// Every listening path ends in the same chain: the mix, bass and treble
// (shelving filters), the headphone volume, then a limiter before the
// speakers. A feedback squeal or a dropped microphone on the floor can reach
// the ears at full scale: the limiter keeps the peaks below 0 dBFS whatever
// comes in (acoustic shock is an occupational injury of interpreters).

const FFT_SIZE = 8192;
/** The tone controls: shelving filters, ±12 dB. */
export const BASS_HZ = 250;
export const TREBLE_HZ = 3000;
export const TONE_RANGE_DB = 12;

const LIMIT_DB = -6;
const LIMIT_RATIO = 20;

/** A DynamicsCompressorNode set up as a limiter: hard knee, highest ratio, fastest attack. */
export function createLimiter(context) {
  const limiter = context.createDynamicsCompressor();
  limiter.threshold.value = LIMIT_DB;
  limiter.knee.value = 0;
  limiter.ratio.value = LIMIT_RATIO;
  limiter.attack.value = 0;
  limiter.release.value = 0.1;
  return limiter;
}

/**
 * The gain that undoes the compressor's automatic makeup gain (Web Audio spec:
 * (1 / gain at 0 dBFS) ^ 0.6), so that sound below the threshold passes at its
 * own level and the limiter only ever lowers peaks.
 */
export function makeupCompensation() {
  const fullRangeDb = LIMIT_DB + -LIMIT_DB / LIMIT_RATIO;
  return 10 ** ((0.6 * fullRangeDb) / 20);
}

function describe(node, role) {
  let name = node.constructor.name;
  if (node instanceof BiquadFilterNode) name += `(${node.type})`;
  return role ? `${name}:${role}` : name;
}

export class Mixer {
  constructor() {
    this.context = new AudioContext({ latencyHint: "interactive" });
    this.inputs = new Map(); // name -> {source, gain, analyser, element, track}
    const context = this.context;
    this.bus = context.createGain();
    this.bass = context.createBiquadFilter();
    this.bass.type = "lowshelf";
    this.bass.frequency.value = BASS_HZ;
    this.treble = context.createBiquadFilter();
    this.treble.type = "highshelf";
    this.treble.frequency.value = TREBLE_HZ;
    this.volume = context.createGain();
    this.limiter = createLimiter(context);
    this.trim = context.createGain();
    this.trim.gain.value = makeupCompensation();
    // What reaches the ears, measured after the limiter (the output meter, the tests).
    this.output = context.createAnalyser();
    this.output.fftSize = 2048;
    this.output.smoothingTimeConstant = 0;
    this.chain = [
      [this.bus, "mix"],
      [this.bass, "bass"],
      [this.treble, "treble"],
      [this.volume, "volume"],
      [this.limiter, "limiter"],
      [this.trim, "trim"],
      [context.destination, ""],
    ];
    for (let i = 0; i + 1 < this.chain.length; i += 1) this.chain[i][0].connect(this.chain[i + 1][0]);
    this.trim.connect(this.output);
  }

  /** The chain every input goes through, input to speakers, as node names. */
  graph() {
    return this.chain.map(([node, role]) => describe(node, role));
  }

  /** Bass and treble in dB (each ±12). */
  setTone(bassDb, trebleDb) {
    const clamp = (db) => Math.max(-TONE_RANGE_DB, Math.min(TONE_RANGE_DB, Number(db) || 0));
    this.bass.gain.setTargetAtTime(clamp(bassDb), this.context.currentTime, 0.02);
    this.treble.gain.setTargetAtTime(clamp(trebleDb), this.context.currentTime, 0.02);
  }

  /** Headphone volume, 0..1 (the limiter still bounds whatever comes out). */
  setMasterVolume(volume) {
    this.volume.gain.setTargetAtTime(Math.max(0, volume), this.context.currentTime, 0.02);
  }

  resume() {
    return this.context.resume();
  }

  /**
   * Plays a received track under `name` at `volume` (0..1). Replaces any track
   * already playing under that name.
   */
  attach(name, track, volume = 1) {
    this.detach(name);
    const stream = new MediaStream([track]);
    // Chromium only pulls a remote track into WebAudio while a media element
    // plays it too; the element stays muted, WebAudio does the mixing.
    const element = new Audio();
    element.muted = true;
    element.srcObject = stream;
    element.play().catch(() => {});
    const source = this.context.createMediaStreamSource(stream);
    const analyser = this.context.createAnalyser();
    analyser.fftSize = FFT_SIZE;
    analyser.smoothingTimeConstant = 0;
    const gain = this.context.createGain();
    gain.gain.value = volume;
    source.connect(analyser);
    source.connect(gain).connect(this.bus);
    this.inputs.set(name, { source, gain, analyser, element, track });
  }

  detach(name) {
    const input = this.inputs.get(name);
    if (!input) return;
    input.source.disconnect();
    input.gain.disconnect();
    input.element.srcObject = null;
    this.inputs.delete(name);
  }

  setVolume(name, volume) {
    const input = this.inputs.get(name);
    if (input) input.gain.gain.setTargetAtTime(volume, this.context.currentTime, 0.02);
  }

  analyser(name) {
    return this.inputs.get(name)?.analyser ?? null;
  }
}

/** Loudest frequency (Hz) and RMS level of what an analyser hears right now. */
export function analyse(analyser, sampleRate) {
  const samples = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const value of samples) sum += value * value;
  const rms = Math.sqrt(sum / samples.length);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(spectrum);
  let best = 1;
  for (let i = 2; i < spectrum.length; i += 1) if (spectrum[i] > spectrum[best]) best = i;
  const frequency = (best * sampleRate) / analyser.fftSize;
  return { frequency: rms > 1e-4 ? frequency : 0, rms, peakDb: spectrum[best] };
}

/**
 * Frequency (Hz) of a pure tone from the zero crossings of the last `samples`
 * samples only: coarse, but it reacts within a few milliseconds, where an FFT
 * needs its whole window (used to time a language switch).
 */
export function recentFrequency(analyser, sampleRate, samples = 1024) {
  const all = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(all);
  const tail = all.subarray(all.length - samples);
  let crossings = 0;
  let sum = 0;
  for (let i = 0; i < tail.length; i += 1) {
    sum += tail[i] * tail[i];
    if (i > 0 && (tail[i - 1] < 0) !== (tail[i] < 0)) crossings += 1;
  }
  const rms = Math.sqrt(sum / tail.length);
  return { frequency: rms > 1e-3 ? (crossings * sampleRate) / (2 * tail.length) : 0, rms };
}

/** The peak of what an analyser hears, 0..1 and above (1 = 0 dBFS). */
export function peakLevel(analyser) {
  const samples = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(samples);
  let peak = 0;
  for (const value of samples) peak = Math.max(peak, Math.abs(value));
  return peak;
}

/** A VU meter: fills a <meter> from an analyser on a local or remote track. */
export function meterLevel(analyser) {
  const samples = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(samples);
  let peak = 0;
  for (const value of samples) peak = Math.max(peak, Math.abs(value));
  // Display in dBFS over a 60 dB range, as broadcast meters do.
  const db = 20 * Math.log10(Math.max(peak, 1e-6));
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

export function localAnalyser(context, stream) {
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  return analyser;
}
