"""The one asyncio event loop, in one daemon thread, that serves every lab host of a process.

`shared_loop()` starts it on first use; `LoopThread.run` runs a coroutine on it from any other
thread and returns its result (or raises its exception). The loop lives as long as the process:
servers are started and stopped on it, the loop itself is never closed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name="mfa-agent lab", daemon=True)
        self.thread.start()
        started.wait()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        """Run `coroutine` on the loop and wait for its result (from another thread)."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("LoopThread.run called from the loop's own thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


_shared: LoopThread | None = None
_shared_lock = threading.Lock()


def shared_loop() -> LoopThread:
    """The process's lab event loop (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LoopThread()
        return _shared
