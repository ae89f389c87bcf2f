"""UDP port ranges for tests: they live in `testbed/` so benchmarks use them too."""

from testbed.ports import free_udp_range

__all__ = ["free_udp_range"]
