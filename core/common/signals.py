"""Stopping cleanly on SIGINT, SIGTERM and SIGHUP: each raises `Interrupted` in the main thread, so `finally`
blocks and atomic writes remove every temporary file, and the caller reports exit 128 + signal. Used by the core's
CLI and by the add-on's batch runs."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from .errors import Interrupted

#: Signals that stop a run cleanly (those this platform has).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_PARENT_GONE = threading.Event()


def _stop(signum: int, _frame: object) -> None:
    """Signal handler: raise Interrupted in the main thread; further signals are ignored while it cleans up."""
    for sig in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_IGN)
    if _PARENT_GONE.is_set():
        raise Interrupted("The program that started Mimic has gone; stopped, nothing was written.", "", signum)
    name = signal.Signals(signum).name
    raise Interrupted(f"Interrupted ({name}); nothing was written.", "Run the command again.", signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP raise Interrupted. A signal the process inherited as ignored
    stays ignored (nohup, a script's `&`), except SIGTERM, which the stdin watch uses. Main thread only."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in previous.items():
        if handler != signal.SIG_IGN or sig == signal.SIGTERM:
            signal.signal(sig, _stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)


def interrupt_when_stdin_closes() -> None:
    """Stop the run (as SIGTERM would, inside stop_on_signals) once stdin reaches end of file, the parent having
    gone, however the process was started."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 1 << 16):  # the raw fd: a daemon thread blocked in sys.stdin's buffer aborts at exit
                pass
        _PARENT_GONE.set()
        _thread.interrupt_main(signal.SIGTERM)

    threading.Thread(target=watch, name="mimic-stdin-watch", daemon=True).start()


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block the stop signals while a child process starts: it inherits the mask and keeps them blocked, so a
    Ctrl-C to the terminal's process group stops only the main process, which then ends the child in order.
    Signals that arrive meanwhile are delivered to the main process afterwards."""
    stop = {signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])}
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no masks; Ctrl-C there goes to the console's processes
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
