"""The names the live service gives the streamer: outputs, publishers and their sources.

Every node derives the same names from the program, so an output or a source means the
same thing on every node of an event.

- ``program-video`` and ``floor`` (`FLOOR`: the output is named after what it carries):
  the on-air speaker's video and audio;
- ``channel:<code>``, one per event language: what the routing rule says;
- ``preview:<speaker_id>``: each speaker's video, for the moderator's previews;
- ``sign:<booth_id>``: the video of a sign-language booth's interpreter on air.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from signaling.protocol import ORIGINAL
from signaling.routing_rule import FLOOR

PROGRAM_VIDEO = "program-video"

#: The media stream (msid) that the program video and the audio heard with it share,
#: so the browser keeps them in lip sync.
PROGRAM_STREAM = "program"
#: Per role, the audio slot played with the program video: the attendee's channel
#: (the speaker himself when the channel is the floor's language), the
#: interpreter's listening, the moderator's floor.
_HEARD_WITH_VIDEO = ("channel", "listen", "floor")


def channel_output(language: str) -> str:
    return f"channel:{language}"


def output_heard(choice: str) -> str:
    """The output that carries what a listener chose: the floor (`FLOOR`; `ORIGINAL` is
    the attendee's word for it on the wire) or a language's channel."""
    return FLOOR if choice in (FLOOR, ORIGINAL) else channel_output(choice)


def choice_heard(output: str) -> str:
    """What an output carries, as staff name it: `FLOOR`, or the channel's language."""
    return FLOOR if output == FLOOR else output.removeprefix("channel:")


def preview_output(speaker_id: str) -> str:
    return f"preview:{speaker_id}"


def sign_output(booth_id: str) -> str:
    """The video of a sign-language booth's interpreter on air."""
    return f"sign:{booth_id}"


def output_kind(output: str) -> str:
    video = output == PROGRAM_VIDEO or output.startswith(("preview:", "sign:"))
    return "video" if video else "audio"


def speaker_publisher(speaker_id: str) -> str:
    return f"speaker:{speaker_id}"


def interpreter_publisher(booth_id: str, interpreter: str) -> str:
    """A stable publisher id for an interpreter, whatever his link's subject looks like.

    Source ids are "<publisher>/<kind>" and the streamer caps names at 200 characters:
    a subject that is long or holds the separator is replaced by its digest.
    """
    if len(interpreter) > 64 or "/" in interpreter:
        interpreter = "sha256-" + hashlib.sha256(interpreter.encode()).hexdigest()[:32]
    return f"interpreter:{booth_id}:{interpreter}"


def source_of(publisher_id: str, kind: str) -> str:
    """The streamer's id of a publisher's track of one kind."""
    return f"{publisher_id}/{kind}"


def publisher_of(source_id: str) -> str:
    return source_id.rsplit("/", 1)[0]


def lip_sync_streams(slots: Mapping[str, str]) -> dict[str, str]:
    """Which slots of a subscription share the program's media stream."""
    if "video" not in slots:
        return {}
    heard = next((name for name in _HEARD_WITH_VIDEO if name in slots), None)
    return {name: PROGRAM_STREAM for name in ("video", heard) if name is not None}
