// What the listener hears, built with WebAudio: the chosen channel at full
// volume, the floor (original) mixed under it at the listener's volume, and
// analysers on what is actually received (also used by the VU meters).

const FFT_SIZE = 8192;

export class Mixer {
  constructor() {
    this.context = new AudioContext({ latencyHint: "interactive" });
    this.inputs = new Map(); // name -> {source, gain, analyser, element, track}
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
    source.connect(gain).connect(this.context.destination);
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
