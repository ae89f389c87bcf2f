"""Chromium as publisher and as subscriber of the SFU (the peers Dragoman really serves).

One page publishes a 1000 Hz oscillator and a canvas; an aiortc subscriber
hears the tone. The same page subscribes to an aiortc publisher's video and
two audio outputs (video first: the order that once left the last audio slot
unstarted); Chromium decodes frames and counts each audio stream's packets.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, Playwright

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.support.browser import launch_chromium, page_errors
from tests.support.tones import PatternVideoTrack, ToneTrack

pytestmark = pytest.mark.browser

CHROMIUM_MEDIA_ARGS = ["--autoplay-policy=no-user-gesture-required"]

GATHERED = """
async (pc) => {
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => {
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
    });
  }
  return pc.localDescription.sdp;
}
"""

PUBLISH = (
    """
async () => {
  const gathered = """
    + GATHERED
    + """;
  const audio = new AudioContext();
  const oscillator = audio.createOscillator();
  oscillator.frequency.value = 1000;
  const destination = audio.createMediaStreamDestination();
  oscillator.connect(destination);
  oscillator.start();
  const canvas = document.createElement('canvas');
  canvas.width = 160;
  canvas.height = 120;
  const draw = canvas.getContext('2d');
  let n = 0;
  window.painter = setInterval(() => {
    draw.fillStyle = `rgb(${(n += 7) % 256}, 120, 40)`;
    draw.fillRect(0, 0, 160, 120);
  }, 33);
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver(destination.stream.getAudioTracks()[0], {direction: 'sendonly'});
  pc.addTransceiver(canvas.captureStream(30).getVideoTracks()[0], {direction: 'sendonly'});
  await pc.setLocalDescription(await pc.createOffer());
  window.publisher = pc;
  return await gathered(pc);
}
"""
)

SUBSCRIBE = (
    """
async (offer) => {
  const gathered = """
    + GATHERED
    + """;
  const pc = new RTCPeerConnection({iceServers: []});
  await pc.setRemoteDescription({type: 'offer', sdp: offer});
  await pc.setLocalDescription(await pc.createAnswer());
  window.subscriber = pc;
  return await gathered(pc);
}
"""
)

RECEIVED = """
async () => {
  const stats = await window.subscriber.getStats();
  const result = {audioPackets: 0, audioStreams: 0, fewestAudioPackets: 0, framesDecoded: 0};
  const perStream = [];
  stats.forEach((report) => {
    if (report.type !== 'inbound-rtp') return;
    if (report.kind === 'audio') {
      result.audioPackets += report.packetsReceived || 0;
      result.audioStreams += 1;
      perStream.push(report.packetsReceived || 0);
    }
    if (report.kind === 'video') result.framesDecoded += report.framesDecoded || 0;
  });
  result.fewestAudioPackets = perStream.length ? Math.min(...perStream) : 0;
  return result;
}
"""

SELECTED_PAIR = """
async () => {
  const stats = await window.subscriber.getStats();
  let pair = null;
  stats.forEach((report) => {
    if (report.type === 'transport' && report.selectedCandidatePairId) {
      pair = stats.get(report.selectedCandidatePairId);
    }
  });
  if (!pair) return null;
  return {
    local: stats.get(pair.localCandidateId).address,
    remote: stats.get(pair.remoteCandidateId).address,
  };
}
"""


@pytest.fixture
async def media_page(playwright_instance: Playwright) -> Page:
    browser = await launch_chromium(playwright_instance, extra_args=CHROMIUM_MEDIA_ARGS)
    context = await browser.new_context()
    page = await context.new_page()
    yield page
    await browser.close()


async def test_chromium_publishes_and_subscribes(sfu: Sfu, peers: Peers, media_page: Page) -> None:
    errors = page_errors(media_page)
    sfu.declare_output("floor", "audio")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("channel", "audio")

    # Chromium publishes; an aiortc listener hears its oscillator.
    answer = await sfu.publish("browser", await media_page.evaluate(PUBLISH))
    await media_page.evaluate(
        "async (sdp) => window.publisher.setRemoteDescription({type: 'answer', sdp})", answer
    )
    assert set(sfu.sources()) == {"browser/audio", "browser/video"}
    sfu.point("floor", "browser/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"})
    heard = listener.audio["voice"]
    await heard.wait_for_samples(1.0, within=20)
    assert abs(heard.dominant_frequency() - 1000) < 15

    # Chromium subscribes to an aiortc publisher's video, an audio channel and the floor.
    await peers.publisher("camera", [ToneTrack(440), PatternVideoTrack()])
    sfu.point("program-video", "camera/video")
    sfu.point("channel", "camera/audio")
    offer = await sfu.subscribe(
        "browser-viewer", {"video": "program-video", "voice": "channel", "original": "floor"}
    )
    await sfu.accept_answer("browser-viewer", await media_page.evaluate(SUBSCRIBE, offer))

    latest: dict[str, int] = {}

    async def wait_for(condition, what: str) -> None:
        # Counting, with a generous bound: a busy machine only makes it slower.
        for _ in range(300):
            latest.update(await media_page.evaluate(RECEIVED))
            if condition():
                return
            await media_page.wait_for_timeout(100)
        raise AssertionError(f"Chromium never got {what}: {latest}")

    await wait_for(lambda: latest["framesDecoded"] >= 10, "10 decoded frames")
    await wait_for(
        lambda: latest["audioStreams"] == 2 and latest["fewestAudioPackets"] >= 50,
        "50 packets on each audio stream",
    )
    slots = sfu.stats()["subscribers"]["browser-viewer"]["slots"]
    assert all(slot["ready"] and slot["problem"] is None for slot in slots.values()), slots

    # Re-pointing the channel goes on in the same stream (same SSRC, same report).
    before = latest["audioPackets"]
    sfu.point("channel", "browser/audio")
    await wait_for(lambda: latest["audioPackets"] >= before + 50, "audio after the switch")
    assert latest["audioStreams"] == 2, latest
    # The node gathers on loopback only; Chromium joins it there.
    pair = await media_page.evaluate(SELECTED_PAIR)
    assert pair == {"local": "127.0.0.1", "remote": "127.0.0.1"}, pair
    assert errors == [], errors
