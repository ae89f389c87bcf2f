"""The embedded hub: the live log of the workers of one machine, without Redis.

`dragoman serve --workers N` runs N worker processes, each a node of the event. They
share the live event through this hub, which the supervising process runs on a Unix
socket: an ordered log of changes, the latest snapshot and the node registry, in
memory, with what Redis does for nodes on several machines (`redis_bus`). Nothing
durable lives here: registrations and the durable live state stay in the store (the
SQLite file the workers share), so a hub restarted with its machine loses nothing.

Wire: one JSON object per line. A worker sends ``{"n": <request>, "op": ..., ...}``
and gets ``{"n": <request>, "ok": <result>}`` or ``{"n": ..., "error": "..."}``;
requests are served concurrently, so a blocking ``read`` does not hold the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from signaling.live.shared_bus import PUBLISH_TIMEOUT_S, Entry, SharedBus, stream_id

log = logging.getLogger(__name__)

#: Changes kept (the log's tail): far more than a worker needs to catch up.
LOG_LENGTH = 10_000
#: How long one blocking read waits for changes before answering "nothing".
READ_BLOCK_S = 0.25
#: How long a worker waits for the hub's answer before taking it for gone.
REQUEST_TIMEOUT_S = 5.0
#: The largest line either side accepts (a snapshot of a large event fits many times).
MAX_LINE = 8 * 1024 * 1024


class LiveHub:
    """The log, snapshot and registry of the workers of one machine."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._entries: deque[Entry] = deque(maxlen=LOG_LENGTH)
        self._last = (0, 0)
        self._grown = asyncio.Condition()
        self._snapshot: tuple[str, str] | None = None
        self._presences: dict[str, str] = {}
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        self.path.chmod(0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # The workers' links first: waiting for the server to close would wait for them.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None

    def presences(self) -> dict[str, dict[str, Any]]:
        """Every node's last presence, as announced (for placing new connections)."""
        found = {}
        for node, raw in self._presences.items():
            with contextlib.suppress(ValueError):
                found[node] = json.loads(raw)
        return found

    # --- serving --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        requests: set[asyncio.Task[None]] = set()
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    number, op = request["n"], request["op"]
                except (ValueError, KeyError, TypeError):
                    log.warning("the hub got a line that is not a request; closing that link")
                    return
                answer = asyncio.ensure_future(self._answer(writer, number, op, request))
                requests.add(answer)
                answer.add_done_callback(requests.discard)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            for answer in requests:
                answer.cancel()
            self._connections.discard(task)
            writer.close()

    async def _answer(
        self, writer: asyncio.StreamWriter, number: int, op: str, request: dict[str, Any]
    ) -> None:
        try:
            reply: dict[str, Any] = {"n": number, "ok": await self._do(op, request)}
        except (KeyError, TypeError, ValueError) as exc:
            reply = {"n": number, "error": f"{op}: {exc}"}
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            await writer.drain()

    async def _do(self, op: str, request: dict[str, Any]) -> Any:
        if op == "append":
            return await self._append(dict(request["fields"]))
        if op == "read":
            return await self._read(str(request["after"]), bool(request["block"]))
        if op == "newest":
            return self._format(self._last)
        if op == "get_snapshot":
            return self._snapshot[1] if self._snapshot else None
        if op == "put_snapshot":
            entry_id, body = str(request["id"]), str(request["body"])
            if self._snapshot is None or stream_id(self._snapshot[0]) < stream_id(entry_id):
                self._snapshot = (entry_id, body)
            return None
        if op == "put_presence":
            self._presences[str(request["node"])] = str(request["body"])
            return None
        if op == "all_presences":
            return dict(self._presences)
        if op == "forget_presence":
            self._presences.pop(str(request["node"]), None)
            return None
        raise ValueError(f"unknown operation {op!r}")

    async def _append(self, fields: dict[str, str]) -> str:
        ms = int(self.clock() * 1000)
        self._last = (ms, 0) if ms > self._last[0] else (self._last[0], self._last[1] + 1)
        entry_id = self._format(self._last)
        self._entries.append((entry_id, {str(k): str(v) for k, v in fields.items()}))
        async with self._grown:
            self._grown.notify_all()
        return entry_id

    async def _read(self, after: str, block: bool) -> list[Entry]:
        found = self._after(stream_id(after))
        if found or not block:
            return found
        async with self._grown:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grown.wait(), READ_BLOCK_S)
        return self._after(stream_id(after))

    def _after(self, after: tuple[int, int]) -> list[Entry]:
        if not self._entries or stream_id(self._entries[-1][0]) <= after:
            return []
        return [entry for entry in self._entries if stream_id(entry[0]) > after][:500]

    @staticmethod
    def _format(entry_id: tuple[int, int]) -> str:
        return f"{entry_id[0]}-{entry_id[1]}"


class HubBus(SharedBus):
    """The live bus of a worker: the shared-log logic over the machine's hub."""

    unreachable = (OSError, EOFError)

    def __init__(
        self,
        path: Path,
        *,
        node: str | None = None,
        clock: Callable[[], float] = time.time,
        publish_timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        super().__init__(node=node, clock=clock, publish_timeout=publish_timeout)
        self.path = path
        self._writer: asyncio.StreamWriter | None = None
        self._listener: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._numbers = itertools.count(1)
        self._connecting = asyncio.Lock()

    async def _open(self) -> None:
        await self._connect()

    async def _close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._writer is not None:
            self._writer.close()
        self._writer = self._listener = None

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
            self._writer = writer
            self._listener = asyncio.get_running_loop().create_task(self._listen(reader))
            return writer

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                reply = json.loads(line)
                future = self._replies.pop(reply.get("n"), None)
                if future is None or future.done():
                    continue
                if "error" in reply:
                    future.set_exception(ValueError(reply["error"]))
                else:
                    future.set_result(reply.get("ok"))
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            lost = ConnectionError("the hub closed the link")
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(lost)
            self._replies.clear()
            if self._writer is not None:
                self._writer.close()

    async def _request(self, op: str, **fields: Any) -> Any:
        writer = await self._connect()
        number = next(self._numbers)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[number] = future
        try:
            writer.write(json.dumps({"n": number, "op": op, **fields}).encode() + b"\n")
            await writer.drain()
            try:
                return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
            except TimeoutError:
                # A hub that does not answer is one that is gone, whatever its socket says.
                raise ConnectionError(f"the hub did not answer {op} in time") from None
        finally:
            self._replies.pop(number, None)

    async def _append(self, fields: dict[str, str]) -> None:
        await self._request("append", fields=fields)

    async def _read(self, after: str, *, block: bool) -> list[Entry]:
        return [
            (entry_id, fields)
            for entry_id, fields in await self._request("read", after=after, block=block)
        ]

    async def _newest_id(self) -> str:
        return str(await self._request("newest"))

    async def _get_snapshot(self) -> str | None:
        return await self._request("get_snapshot")

    async def _put_snapshot(self, entry_id: str, body: str) -> None:
        await self._request("put_snapshot", id=entry_id, body=body)

    async def _put_presence(self, node: str, body: str) -> None:
        await self._request("put_presence", node=node, body=body)

    async def _all_presences(self) -> dict[str, str]:
        return dict(await self._request("all_presences"))

    async def _forget_presence(self, node: str) -> None:
        await self._request("forget_presence", node=node)
