"""H.264 as the streamer meets it: RTP payloads (RFC 6184) in, access units out.

A browser that sends H.264 already sends what every HLS player and every
recording wants, so the node repackages it instead of decoding and encoding
it again. That takes four small pieces, kept here so that the HLS packager
and the recorder share them:

- `depacketize`: one RTP payload (single NAL unit, STAP-A or FU-A, the packets
  of packetization-mode 1) to its part of an Annex-B access unit;
- `nal_units`: an Annex-B access unit cut into its NAL units;
- `avcc_sample` / `avc_decoder_configuration`: the length-prefixed sample and
  the ``avcC`` record that MP4 and Matroska files carry (ISO/IEC 14496-15);
- `read_sps`: the picture size and profile a sequence parameter set announces,
  for the playlist's RESOLUTION and CODECS attributes.

Every function raises `H264Error` with a sentence on input it cannot use: the
payloads come from browsers we do not control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
_STAP_A = 24
_FU_A = 28
START_CODE = b"\x00\x00\x00\x01"
_START = re.compile(b"\x00\x00\x01")
# Profiles whose SPS carries chroma format, bit depths and scaling lists (H.264 7.3.2.1.1).
_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))


class H264Error(ValueError):
    """An H.264 payload or parameter set that cannot be used; the message says why."""


def depacketize(payload: bytes) -> bytes:
    """This RTP payload's bytes of the Annex-B access unit (start codes included).

    A fragment (FU-A) that does not start its NAL unit yields only its bytes: the
    caller joins the packets of one frame in sequence order.
    """
    if len(payload) < 2:
        raise H264Error(f"an H.264 RTP payload of {len(payload)} byte(s) holds no NAL unit")
    if payload[0] & 0x80:
        raise H264Error("the H.264 NAL header's forbidden bit is set")
    nal_type = payload[0] & 0x1F
    if 1 <= nal_type <= 23:
        return START_CODE + payload
    if nal_type == _STAP_A:
        parts = []
        pos = 1
        while pos < len(payload):
            if pos + 2 > len(payload):
                raise H264Error("an H.264 STAP-A payload ends inside a NAL unit's size")
            size = payload[pos] << 8 | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > len(payload):
                raise H264Error(
                    f"an H.264 STAP-A payload announces a NAL unit of {size} bytes "
                    f"where {len(payload) - pos} remain"
                )
            parts.append(START_CODE + payload[pos : pos + size])
            pos += size
        return b"".join(parts)
    if nal_type == _FU_A:
        header = payload[1]
        if header & 0x80:  # S: the fragment starting the NAL unit rebuilds its header
            return START_CODE + bytes(((payload[0] & 0xE0) | (header & 0x1F),)) + payload[2:]
        return payload[2:]
    raise H264Error(
        f"H.264 NAL unit type {nal_type} is not sent in packetization-mode 1 "
        "(single NAL units, STAP-A and FU-A are)"
    )


def nal_units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit (3- or 4-byte start codes)."""
    starts = [m.end() for m in _START.finditer(access_unit)]
    units = []
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(access_unit)
        unit = access_unit[start:end]
        if index + 1 < len(starts):
            # The zero before a 4-byte start code belongs to the start code.
            unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def is_idr(units: list[bytes]) -> bool:
    """True if these NAL units hold an IDR picture (a place to start decoding)."""
    return any(unit[0] & 0x1F == NAL_IDR for unit in units)


def avcc_sample(units: list[bytes]) -> bytes:
    """An MP4/Matroska sample: each NAL unit behind its 4-byte length.

    Access unit delimiters are left out (the container delimits samples); parameter
    sets stay, so a picture size a browser changes mid-stream reaches the decoder.
    """
    return b"".join(
        len(unit).to_bytes(4, "big") + unit for unit in units if unit[0] & 0x1F != NAL_AUD
    )


def parameter_sets(units: list[bytes]) -> tuple[bytes, bytes] | None:
    """The first SPS and PPS among these NAL units, if both are there."""
    sps = next((u for u in units if u[0] & 0x1F == NAL_SPS), None)
    pps = next((u for u in units if u[0] & 0x1F == NAL_PPS), None)
    return (sps, pps) if sps is not None and pps is not None else None


def avc_decoder_configuration(sps: bytes, pps: bytes) -> bytes:
    """The ``avcC`` record (AVCDecoderConfigurationRecord) of one SPS and one PPS."""
    if len(sps) < 4:
        raise H264Error(f"an SPS of {len(sps)} bytes is too short")
    return b"".join(
        (
            bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1)),  # 4-byte lengths, one SPS
            len(sps).to_bytes(2, "big"),
            sps,
            b"\x01",
            len(pps).to_bytes(2, "big"),
            pps,
        )
    )


@dataclass(frozen=True)
class SequenceParameters:
    """What a sequence parameter set says about the pictures that follow it."""

    profile_idc: int
    constraints: int
    level_idc: int
    width: int
    height: int

    @property
    def codec(self) -> str:
        """The RFC 6381 codec name, as HLS playlists write it (``avc1.42e01f``)."""
        return f"avc1.{self.profile_idc:02x}{self.constraints:02x}{self.level_idc:02x}"


class _Bits:
    """Exp-Golomb reading of an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise H264Error("the SPS ends before its picture size")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("the SPS holds an impossible Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _rbsp(unit: bytes) -> bytes:
    return re.sub(b"\x00\x00\x03", b"\x00\x00", unit)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def read_sps(sps: bytes) -> SequenceParameters:
    """Profile, level and cropped picture size of a sequence parameter set (7.3.2.1.1)."""
    if len(sps) < 4 or sps[0] & 0x1F != NAL_SPS:
        raise H264Error("this NAL unit is not a sequence parameter set")
    profile, constraints, level = sps[1], sps[2], sps[3]
    bits = _Bits(_rbsp(sps[4:]))
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.bit()  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    if width <= 0 or height <= 0:
        raise H264Error(f"the SPS announces an impossible picture size {width}x{height}")
    return SequenceParameters(profile, constraints, level, width, height)
