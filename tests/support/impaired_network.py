"""The impaired-network relay for tests: it lives in `testbed/` so benchmarks use it too."""

from testbed.impaired_network import (
    PAGE_BEHIND_NAT,
    PAGE_PEERS_KEPT,
    RELAY_HOST,
    Impairment,
    PathCounters,
    UdpRelay,
    page_behind_nat,
    relayed_node_settings,
    strip_candidates,
)

__all__ = [
    "PAGE_BEHIND_NAT",
    "PAGE_PEERS_KEPT",
    "RELAY_HOST",
    "Impairment",
    "PathCounters",
    "UdpRelay",
    "page_behind_nat",
    "relayed_node_settings",
    "strip_candidates",
]
