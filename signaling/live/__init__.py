"""The live event: who is on air, where the streamer points, what clients see.

One `LiveEvent` per node and event (`event`). Its rooms:

- `replica`: the shared state and the `Change`s that move it, alike on every node;
- `bus`, `redis_bus`: how changes and each node's `presence` reach every node;
- `commands`: what clients may ask, checked and turned into changes;
- `media_plan`: the routing rule's result pointed at the streamer's outputs and slots;
- `media_watch`: failover from stopped voices, and the alarms;
- `views`: the state each role is shown;
- `outputs`, `clients`: the names given to the streamer, and the connections.
"""

from signaling.live.clients import AttendeeChoice, Client
from signaling.live.event import LiveEvent
from signaling.live.outputs import (
    PROGRAM_VIDEO,
    channel_output,
    interpreter_publisher,
    preview_output,
    sign_output,
    speaker_publisher,
)

__all__ = [
    "PROGRAM_VIDEO",
    "AttendeeChoice",
    "Client",
    "LiveEvent",
    "channel_output",
    "interpreter_publisher",
    "preview_output",
    "sign_output",
    "speaker_publisher",
]
