"""Blocking start-up work that a stop signal may abandon.

``anyio.to_thread.run_sync(..., abandon_on_cancel=True)`` lets the caller go at once, but
the abandoned job keeps an anyio worker thread; that thread is not a daemon thread, so
after ``stopped`` the interpreter waits for it to finish *and* for the worker's 10 s idle
timeout before the process exits (seen: a SIGTERM during start-up exiting 12 s late).
:func:`run_abandonable` runs the job in its own daemon thread instead: a cancelled caller
returns at once and the process exits without waiting for the job. Only for work that is
safe to cut off at exit: reads, and SQLite writes inside a transaction (rolled back).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_abandonable(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` in a daemon thread and return its result (or raise its error).

    Cancelling the caller abandons the thread; its result is dropped. asyncio only (the
    daemon's backend).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: object) -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)

    def work() -> None:
        try:
            result: object = fn(*args)
            ok = True
        except BaseException as exc:  # handed to the caller, which decides
            result, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(deliver, ok, result)

    name = f"forexd-{getattr(fn, '__name__', 'job')}"
    threading.Thread(target=work, name=name, daemon=True).start()
    return await future
