"""The one way this service opens a Redis connection.

Redis restarts (an upgrade, a crash, a failover) close every connection. A command sent
on a connection Redis closed is tried again on a new one, a few times over a fraction of
a second, instead of failing the person whose action it carries.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def reconnecting_client(url: str) -> aioredis.Redis:
    return aioredis.from_url(
        url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
