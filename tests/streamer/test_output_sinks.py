"""An output's hot-loop list (`Output.sinks`) holds exactly its slots that receive
(started, not paused, not closed), kept one slot at a time as slots join, pause, move
and leave: a join wave must not walk every slot of the output at each join."""

from __future__ import annotations

from streamer.output import Output
from streamer.subscriber import Slot


def started(name: str, output: Output) -> Slot:
    slot = Slot(name, "audio", output)
    output.attach(slot)
    assert slot not in output.sinks, "a slot not yet negotiated gets nothing"
    slot.ready = True  # what Slot.start does once aiortc negotiated the sender
    output.refresh(slot)
    return slot


def test_the_hot_loop_list_follows_each_slot() -> None:
    french, russian = Output("channel-fr", "audio"), Output("channel-ru", "audio")
    a, b, c = (started(name, french) for name in "abc")
    assert french.sinks == (a, b, c)

    b.pause(True)
    assert french.sinks == (a, c)
    b.pause(True)
    assert french.sinks == (a, c)
    b.pause(False)
    assert set(french.sinks) == {a, b, c} and len(french.sinks) == 3

    c.point(russian)
    assert set(french.sinks) == {a, b} and russian.sinks == (c,)
    a.close()
    assert french.sinks == (b,) and french.slots == {b}

    # A paused slot that moves is not fed by its new output either, until it resumes.
    b.pause(True)
    b.point(russian)
    assert french.sinks == () and russian.sinks == (c,)
    b.pause(False)
    assert set(russian.sinks) == {b, c}
