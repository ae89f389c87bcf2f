"""The token buckets of one connection (`signaling.message_rate`), on a clock of our own."""

from __future__ import annotations

from signaling.message_rate import MEDIA_BURST, MessageRate, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_burst_then_refusals_then_the_close() -> None:
    rate = MessageRate(20, 40, clock=Clock())
    verdicts = [rate.take("ping") for _ in range(81)]
    assert verdicts[:40] == [Verdict.ACCEPT] * 40
    assert verdicts[40:80] == [Verdict.REFUSE] * 40
    assert verdicts[80] is Verdict.CLOSE
    assert rate.refused == 41


def test_the_allowance_refills_at_its_rate() -> None:
    clock = Clock()
    rate = MessageRate(20, 40, clock=clock)
    for _ in range(40):
        assert rate.take("ping") is Verdict.ACCEPT
    assert rate.take("ping") is Verdict.REFUSE
    assert "send it again in 0.1 s" in rate.refusal("ping")
    clock.now += 0.5  # ten tokens, one of them paying the debt
    assert [rate.take("ping") for _ in range(9)] == [Verdict.ACCEPT] * 9
    assert rate.take("ping") is Verdict.REFUSE
    # A client that keeps to the rate is never refused, however long it goes on.
    clock.now += 10
    for _ in range(1000):
        clock.now += 1 / 20
        assert rate.take("select_channel") is Verdict.ACCEPT


def test_media_messages_have_an_allowance_of_their_own() -> None:
    clock = Clock()
    rate = MessageRate(20, 40, clock=clock)
    assert [rate.take("subscribe") for _ in range(MEDIA_BURST)] == [Verdict.ACCEPT] * MEDIA_BURST
    assert rate.take("offer") is Verdict.REFUSE
    assert "offer opens a media connection" in rate.refusal("offer")
    assert rate.take("ping") is Verdict.ACCEPT  # other messages go on
    clock.now += 2.0  # one a second: the refused one's debt, then one more
    assert rate.take("subscribe") is Verdict.ACCEPT
