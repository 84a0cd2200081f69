"""Index and file work off the event loop: blocking calls in worker threads, and streamed
bodies produced by one thread per response, with back-pressure both ways.

Room: web/. Imports anyio (Starlette's) and asyncio; callers pass `Services` only to return
this thread's index connection after each operation. A database cursor is read in the thread
that opened it (SQLite connections belong to one thread), so a streamed body is produced from
start to end in one dedicated thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio.from_thread
import anyio.to_thread

from pacs.services.context import Services

T = TypeVar("T")
_QUEUED_CHUNKS = 4  # chunks a producer may run ahead of the client
# Pieces are handed over together until they add up to this: multipart and ZIP headers and
# CRLFs travel with the data after them, without being copied into it.
_HANDOVER_BYTES = 128 * 1024
_IDLE_SECONDS = 60.0  # a producer thread with nothing to do for this long ends
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


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Channel:
    """From one producer thread to the event loop, bounded: the producer blocks while
    `_QUEUED_CHUNKS` items wait, and wakes the loop only when the loop waits for an item (a
    wake-up is a round trip through the loop's self-pipe, so a producer that keeps ahead
    hands its chunks over without any)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: queue.Queue[Any] = queue.Queue(_QUEUED_CHUNKS)
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        """Producer thread: hand `item` over (dropped once the consumer has stopped)."""
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        with self._lock:
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            try:
                self.loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # the event loop is gone (server shutting down)
                pass

    async def get(self) -> Any:
        """Event loop: the next item, waiting for the producer when there is none yet."""
        while True:
            try:
                return self.items.get_nowait()
            except queue.Empty:
                pass
            waiter = self.loop.create_future()
            with self._lock:
                self._waiter = waiter
            try:  # an item put before the producer could see the waiter
                return self.items.get_nowait()
            except queue.Empty:
                await waiter

    def stop(self) -> None:
        """Event loop: no more items wanted; a producer blocked on a full channel goes on."""
        self.stopped.set()
        while True:
            try:
                self.items.get_nowait()
            except queue.Empty:
                return


class _Producers:
    """Daemon threads kept for the next streamed body: an idle one takes it, else a new one
    starts; one idle for `_IDLE_SECONDS` ends. A kept thread keeps its SQLite connection (they
    are per thread), so a search does not open one per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: queue.Queue[Callable[[], None]] = queue.Queue()
        self._idle = 0

    def run(self, task: Callable[[], None]) -> None:
        """Run `task` in a producer thread."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._tasks.put(task)
                return
        threading.Thread(target=self._serve, args=(task,), name="web-stream",
                         daemon=True).start()

    def _serve(self, task: Callable[[], None]) -> None:
        while True:
            task()
            with self._lock:
                self._idle += 1
            try:
                task = self._tasks.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    try:  # handed one as the wait ran out
                        task = self._tasks.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return


_PRODUCERS = _Producers()


def stream(services: Services, produce: Callable[[], Iterator[bytes]]) -> AsyncIterator[bytes]:
    """The chunks `produce()` yields, made in one thread and handed to the event loop.

    The producer waits while `_QUEUED_CHUNKS` hand-overs are unsent (memory stays bounded);
    one hand-over carries pieces up to `_HANDOVER_BYTES`. When the client goes away, the
    producer's generator is closed at its next chunk, which closes any cursor or file it holds.
    """

    async def body() -> AsyncIterator[bytes]:
        channel = _Channel(asyncio.get_running_loop())
        stopped = channel.stopped

        def worker() -> None:
            held: list[Any] = []
            size = 0
            try:
                chunks = produce()
                try:
                    for chunk in chunks:
                        if stopped.is_set():
                            break
                        if chunk:
                            held.append(chunk)
                            size += len(chunk)
                        if size >= _HANDOVER_BYTES:
                            channel.put(held)
                            held, size = [], 0
                        if stopped.is_set():
                            break
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
                held.append(_DONE)  # the end travels with the last pieces: one wake-up less
            except BaseException as error:  # handed to the event loop, raised there
                held = [_Failure(error)]
            finally:
                services.index.end_operation()
            channel.put(held)

        _PRODUCERS.run(worker)
        try:
            while True:
                for piece in await channel.get():
                    if piece is _DONE:
                        return
                    if isinstance(piece, _Failure):
                        raise piece.error
                    yield piece
        finally:
            channel.stop()

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
