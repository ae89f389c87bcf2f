"""SDP at the streamer's edge: checking what peers send, shaping what we send.

Offers and answers come from browsers we do not control; anything wrong with
one becomes an `InvalidSdp` whose message names the problem. Outgoing
descriptions get the configured public address on their host candidates, for
servers behind a 1:1 NAT.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCRtpSender,
)
from aiortc import sdp as aiortc_sdp
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from .errors import InvalidNetworkSetting, InvalidSdp

MAX_SDP_LENGTH = 64 * 1024
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

#: The video codec a node prefers when a publisher's browser offers both (VP8 is
#: always accepted from a browser that cannot send H.264, and H.264 from one that
#: cannot send VP8). Preferring H.264 lets HLS and recordings repackage the
#: speaker's picture instead of decoding and encoding it again.
VideoCodec = Literal["vp8", "h264"]
VIDEO_CODECS: tuple[VideoCodec, ...] = ("vp8", "h264")

# What the streamer forwards, in order of preference. Subscribers are offered both
# video codecs, so a slot can carry either whatever source it is pointed at.
_PREFERRED_MIME_TYPES: dict[str, dict[VideoCodec, tuple[str, ...]]] = {
    "audio": {"vp8": ("audio/opus",), "h264": ("audio/opus",)},
    "video": {
        "vp8": ("video/VP8", "video/H264", "video/rtx"),
        "h264": ("video/H264", "video/VP8", "video/rtx"),
    },
}

_CANDIDATE_HOST = re.compile(
    r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)", flags=re.MULTILINE
)


def check_video_codec(video_codec: object) -> VideoCodec:
    if video_codec not in VIDEO_CODECS:
        raise InvalidNetworkSetting(
            f"the preferred video codec is one of {', '.join(VIDEO_CODECS)}, "
            f"not {video_codec!r:.40}"
        )
    return video_codec  # type: ignore[return-value]


def codec_preferences(kind: str, video_codec: VideoCodec = "vp8") -> list[RTCRtpCodecCapability]:
    """The codecs a transceiver of `kind` negotiates, the preferred one first."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    ordered: list[RTCRtpCodecCapability] = []
    for mime in _PREFERRED_MIME_TYPES[kind][video_codec]:
        ordered.extend(c for c in codecs if c.mimeType.lower() == mime.lower())
    return ordered


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server, with the username and credential TURN needs."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


def rtc_configuration(
    ice_servers: Sequence[str | IceServer | RTCIceServer],
    bundle_policy: RTCBundlePolicy = RTCBundlePolicy.BALANCED,
) -> RTCConfiguration:
    """ICE servers exactly as given: none means none (aiortc would add a public STUN)."""
    servers = [_rtc_ice_server(s) for s in ice_servers]
    return RTCConfiguration(iceServers=servers, bundlePolicy=bundle_policy)


def _rtc_ice_server(server: str | IceServer | RTCIceServer) -> RTCIceServer:
    if isinstance(server, RTCIceServer):
        return server
    if isinstance(server, IceServer):
        return RTCIceServer(
            urls=list(server.urls), username=server.username, credential=server.credential
        )
    return RTCIceServer(urls=server)


def _check_text(sdp: str, what: str) -> None:
    if not isinstance(sdp, str):
        raise InvalidSdp(f"the {what} must be SDP text, not {type(sdp).__name__}")
    if len(sdp) > MAX_SDP_LENGTH:
        raise InvalidSdp(
            f"the {what} is {len(sdp)} characters long; at most {MAX_SDP_LENGTH} are accepted"
        )
    if not sdp.strip():
        raise InvalidSdp(f"the {what} is empty")
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidSdp(f"the {what} is not SDP: it must start with 'v=0'")


def _parse(sdp: str, what: str) -> aiortc_sdp.SessionDescription:
    _check_text(sdp, what)
    try:
        return aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises bare ValueError/KeyError/IndexError
        raise InvalidSdp(f"the {what} could not be parsed: {exc or type(exc).__name__}") from None


def _check_transport(media: aiortc_sdp.MediaDescription, what: str) -> None:
    """Without ICE credentials and a DTLS fingerprint no connection can be set up."""
    if not media.ice.usernameFragment or not media.ice.password:
        raise InvalidSdp(f"the {what}'s {media.kind} section has no ICE credentials")
    if not media.dtls or not media.dtls.fingerprints:
        raise InvalidSdp(f"the {what}'s {media.kind} section has no DTLS fingerprint")


def check_publisher_offer(sdp: str) -> list[str]:
    """The media kinds a publisher's offer sends, in order; InvalidSdp if unusable."""
    description = _parse(sdp, "offer")
    kinds = [m.kind for m in description.media if m.kind in ("audio", "video")]
    if not kinds:
        raise InvalidSdp("the offer has no audio or video section")
    for kind in ("audio", "video"):
        count = kinds.count(kind)
        if count > 1:
            raise InvalidSdp(
                f"the offer has {count} {kind} sections; a publisher sends at most one audio "
                "and one video track"
            )
    for media in description.media:
        if media.kind not in ("audio", "video"):
            continue
        if media.direction not in (None, "sendonly", "sendrecv"):
            raise InvalidSdp(f"the offer's {media.kind} section does not send ({media.direction})")
        _check_transport(media, "offer")
        if not any(_forwarded(c) for c in media.rtp.codecs):
            offered = ", ".join(sorted({_described(c) for c in media.rtp.codecs})) or "none"
            accepted = "Opus" if media.kind == "audio" else "VP8, H264 (packetization-mode 1)"
            raise InvalidSdp(
                f"the offer's {media.kind} section has no codec the streamer forwards "
                f"(offered: {offered}; accepted: {accepted})"
            )
    return kinds


def _forwarded(codec: RTCRtpCodecParameters) -> bool:
    mime = codec.mimeType.lower()
    if mime == "video/h264":
        # aiortc depacketizes mode 1 only (single NAL units, STAP-A, FU-A).
        return str(codec.parameters.get("packetization-mode", "0")) == "1"
    return mime in ("audio/opus", "video/vp8")


def _described(codec: RTCRtpCodecParameters) -> str:
    if codec.mimeType.lower() == "video/h264":
        mode = codec.parameters.get("packetization-mode", "0")
        return f"{codec.name} (packetization-mode {mode})"
    return codec.name


def check_subscriber_answer(sdp: str, offered_kinds: list[str]) -> aiortc_sdp.SessionDescription:
    """The parsed answer; InvalidSdp unless it has one section per offered slot, in order."""
    description = _parse(sdp, "answer")
    kinds = [m.kind for m in description.media]
    if kinds != offered_kinds:
        raise InvalidSdp(
            f"the answer's media sections ({', '.join(kinds) or 'none'}) do not match the "
            f"offer's ({', '.join(offered_kinds)})"
        )
    # Every slot is sent over one transport, the first section's. aiortc moves
    # sections onto the transport of the BUNDLE group's first one and stops the
    # others: any other first one would stop the transport everything is on.
    bundle = next((g.items for g in description.group if g.semantic == "BUNDLE"), [])
    mids = [m.rtp.muxId for m in description.media]
    unbundled = [mid or "?" for mid in mids if mid not in bundle]
    if unbundled:
        raise InvalidSdp(
            f"the answer does not bundle section(s) {', '.join(unbundled)}: every slot is "
            "sent over one connection, so all sections must be in its BUNDLE group"
        )
    if bundle[0] != mids[0]:
        raise InvalidSdp(
            f"the answer's BUNDLE group starts with section {bundle[0]}; it must start with "
            f"the offer's first section, {mids[0]}"
        )
    for media in description.media:
        _check_transport(media, "answer")
        if not media.rtp.codecs:
            raise InvalidSdp(f"the answer's {media.kind} section accepts none of the codecs")
    return description


def bundle_tag_candidates(
    description: aiortc_sdp.SessionDescription,
) -> list[RTCIceCandidate | None]:
    """The remote candidates on a checked answer's BUNDLE tag (its first section).

    aiortc takes a bundled transport's remote candidates from the last section on
    it, while browsers list them on the tag only: added from here, the server
    checks them too instead of waiting for the subscriber's checks to reveal it.
    None at the end stands for end-of-candidates.
    """
    tag = description.media[0]
    candidates: list[RTCIceCandidate | None] = []
    for candidate in tag.ice_candidates:
        candidate.sdpMid = tag.rtp.muxId
        candidates.append(candidate)
    if tag.ice_candidates_complete:
        candidates.append(None)
    return candidates


def with_public_address(sdp: str, public_address: str | None) -> str:
    """Advertise `public_address` instead of the local address on host candidates."""
    if not public_address:
        return sdp
    return _CANDIDATE_HOST.sub(lambda m: f"{m.group(1)}{public_address}{m.group(3)}", sdp)
