"""bench/copy_cost.py still runs: the real forwarding loop and send path, wired by hand,
at a tiny size, in this process. No figure is judged (benchmarks are not timed tests):
what is checked is that every variant ran and forwarded to every slot, and that bad
sizes are refused with the reason."""

from __future__ import annotations

import pytest

from bench import copy_cost


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_copy_cost_runs_every_variant_at_a_tiny_size(kind: str) -> None:
    result = copy_cost.run(
        copy_cost.Bench(kind=kind, n=3, packets=60, rounds=1, receivers_asleep=False)
    )
    rows = result["per_copy"]
    assert list(rows) == list(copy_cost.VARIANTS)
    # Warm-up, then one round a variant: every slot got every packet.
    assert result["sent_to_first_slot"] == 60 + 60 * len(copy_cost.VARIANTS)
    assert all(row["user_us"] >= 0 and row["system_us"] >= 0 for row in rows.values())
    assert "| no send |" in copy_cost.table(result)


def test_copy_cost_refuses_bad_sizes_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        copy_cost.main(["--n", "0"])
    assert "--n is at least 1, not 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        copy_cost.main(["--n", "3", "--receivers-asleep"])
    assert "--n 5 at least" in capsys.readouterr().err


def test_copy_cost_cold_sends_one_packet_at_a_time_after_a_sweep() -> None:
    result = copy_cost.run(
        copy_cost.Bench(kind="audio", n=3, packets=5, rounds=1, receivers_asleep=False, sweep_mib=1)
    )
    assert result["sweep_mib"] == 1
    assert result["sent_to_first_slot"] == 5 + 5 * len(copy_cost.VARIANTS)
    assert "one packet at a time after a 1 MiB cache sweep" in copy_cost.table(result)
