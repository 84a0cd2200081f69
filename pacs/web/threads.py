"""Index and file work off the event loop: blocking calls in worker threads, and streamed
bodies produced by one thread per response, with back-pressure both ways.

Room: web/. Imports anyio (Starlette's) and asyncio; callers pass `Services` only to return
this thread's index connection after each operation. A database cursor is read in the thread
that opened it (SQLite connections belong to one thread), so a streamed body is produced from
start to end in one dedicated thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio.from_thread
import anyio.to_thread

from pacs.services.context import Services

T = TypeVar("T")
_QUEUED_CHUNKS = 4  # chunks a producer may run ahead of the client
_DONE = object()


async def call(services: Services, function: Callable[..., T], *args: Any) -> T:
    """Run a blocking function in a worker thread; that thread's pooled connection is
    returned afterwards."""

    def run() -> T:
        try:
            return function(*args)
        finally:
            services.index.end_operation()

    return await anyio.to_thread.run_sync(run)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def stream(services: Services, produce: Callable[[], Iterator[bytes]]) -> AsyncIterator[bytes]:
    """The chunks `produce()` yields, made in one thread and handed to the event loop.

    The producer waits while `_QUEUED_CHUNKS` chunks are unsent (memory stays bounded); when
    the client goes away, the producer's generator is closed at its next chunk, which closes
    any cursor or file it holds.
    """

    async def body() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(_QUEUED_CHUNKS)
        stopped = threading.Event()

        def hand_over(item: Any) -> None:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        def worker() -> None:
            chunks = produce()
            try:
                for chunk in chunks:
                    if stopped.is_set():
                        break
                    if chunk:
                        hand_over(chunk)
                    if stopped.is_set():
                        break
                item: Any = _DONE
            except BaseException as error:  # handed to the event loop, raised there
                item = _Failure(error)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
                services.index.end_operation()
            if not stopped.is_set():
                try:
                    hand_over(item)
                except RuntimeError:  # the event loop is gone (server shutting down)
                    pass

        thread = threading.Thread(target=worker, name="web-stream", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            stopped.set()
            while not queue.empty():  # unblock a producer waiting to put
                queue.get_nowait()

    return body()


def body_reader(request_stream: AsyncIterator[bytes]) -> Callable[[], bytes | None]:
    """A blocking `receive()` for a worker thread: the next chunk of a request body, or None
    at its end. Call it only from a thread started by `call` (it waits on the event loop)."""
    chunks = request_stream.__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    def receive() -> bytes | None:
        return anyio.from_thread.run(next_chunk)

    return receive
