"""bench/send_batching.py still runs: every way of sending reaches every receiver, at a
tiny size. No figure is judged (benchmarks are not timed tests)."""

from __future__ import annotations

import os
import socket

import pytest

from bench import send_batching


def test_batched_send_delivers_the_datagram_to_every_address() -> None:
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for receiver in receivers:
            receiver.bind(("127.0.0.1", 0))
            receiver.settimeout(2.0)
        sender.bind(("127.0.0.1", 0))
        batched = send_batching.BatchedSend(sender, [r.getsockname() for r in receivers])
        data = os.urandom(1116)
        batched.load(data)
        batched.send()
        assert [receiver.recv(2048) for receiver in receivers] == [data] * 3
    finally:
        for sock in (*receivers, sender):
            sock.close()


def test_send_batching_runs_every_variant_at_a_tiny_size() -> None:
    result = send_batching.run(send_batching.Bench(n=3, size=100, rounds=3, sweep_mib=1))
    assert list(result["per_copy_us"]) == list(send_batching.VARIANTS)
    assert result["vs_connected_send"]["connected send"] in (1.0, None)
    assert "| one socket, sendmmsg |" in send_batching.table(result)


def test_send_batching_refuses_bad_sizes_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        send_batching.main(["--size", "70000"])
    assert "--size is at most 65507" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        send_batching.main(["--sweep-mib", "0"])
    assert "--sweep-mib is at least 1, not 0" in capsys.readouterr().err
