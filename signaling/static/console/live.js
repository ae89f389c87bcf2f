// Reading the live state the server pushes (the "state" message of
// docs/protocol.md): who is on air, what each channel carries, booths,
// listeners, connected publishers. The pages only read it; the server's
// routing rule decides everything.

export function onAirSpeakerId(state) {
  return state?.on_air?.speaker ?? null;
}

/** {kind: "floor"|"interpreter"|"silence", reason, booth, interpreter} or null. */
export function channelView(state, code) {
  return state?.channels?.[code] ?? null;
}

export function listenerCount(state, channel) {
  return state?.listeners?.[channel] ?? 0;
}

export function boothView(state, boothId) {
  return (state?.booths ?? []).find((booth) => booth.id === boothId) ?? null;
}

export function speakerConnected(state, speakerId) {
  return (state?.publishers?.speakers ?? []).includes(speakerId);
}

/**
 * The booths' requests to slow down ({booth, by, since, until}) still showing at
 * `nowS` (seconds, server clock); the server also pushes a state when one ends.
 */
export function slowDownRequests(state, nowS) {
  return (state?.slow_down ?? []).filter((request) => request.until > nowS);
}

/** The server's clock runs ahead of ours by this many milliseconds (state.server_time is in s). */
export function clockOffsetMs(state) {
  return typeof state?.server_time === "number" ? state.server_time * 1000 - Date.now() : 0;
}
