"""Fixtures for the streamer tests: an SFU and real aiortc peers, all closed afterwards."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCBundlePolicy

from streamer import Sfu, SfuConfig
from tests.streamer.peers import LOOPBACK, PublisherPeer, SubscriberPeer


class Peers:
    """Creates peers against one SFU and closes them all at the end of the test."""

    def __init__(self, sfu: Sfu) -> None:
        self.sfu = sfu
        self._open: list[PublisherPeer | SubscriberPeer] = []

    async def publisher(self, publisher_id: str, tracks: list) -> PublisherPeer:
        peer = await PublisherPeer.connect(self.sfu, publisher_id, tracks)
        self._open.append(peer)
        return peer

    async def subscriber(
        self,
        subscriber_id: str,
        slots: dict[str, str],
        decode: bool = True,
        bundle_policy: RTCBundlePolicy = RTCBundlePolicy.BALANCED,
        refuse: frozenset[str] = frozenset(),
        streams: dict[str, str] | None = None,
    ) -> SubscriberPeer:
        peer = await SubscriberPeer.connect(
            self.sfu, subscriber_id, slots, decode, bundle_policy, refuse, streams
        )
        self._open.append(peer)
        return peer

    def adopt(self, peer: PublisherPeer | SubscriberPeer) -> None:
        """Close a peer the test built by hand along with the others."""
        self._open.append(peer)

    async def close(self) -> None:
        for peer in reversed(self._open):
            await peer.close()
        self._open.clear()


@pytest.fixture
async def sfu() -> AsyncIterator[Sfu]:
    instance = Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK))
    yield instance
    await instance.close()
    # Collect the closed peers' objects now rather than at a random later point:
    # without this, runs ended with CPython 3.11's "AST constructor recursion
    # depth mismatch" while pytest compiled a module after these tests.
    gc.collect()


@pytest.fixture
async def peers(sfu: Sfu) -> AsyncIterator[Peers]:
    created = Peers(sfu)
    yield created
    await created.close()
