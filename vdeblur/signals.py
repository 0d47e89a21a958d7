"""SIGTERM and SIGHUP handled like Ctrl-C while a CLI command runs.

Python's default for SIGTERM and SIGHUP is to die at once without running ``finally`` blocks, so
``timeout``, ``kill``, a job scheduler or a closed terminal would leave the hidden temp file of an
atomic write behind. The CLI turns them into :class:`Terminated`, a KeyboardInterrupt, so every path
that already cleans up after Ctrl-C cleans up after them too. Only the CLI installs the handlers, in
the main thread, for the length of one command: the library never takes an embedding program's signals.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Windows has no SIGHUP.
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_watched: list[list[int]] = []   # the signals raised within each active terminate_as_interrupt, innermost last


class Terminated(KeyboardInterrupt):
    """A terminating signal arrived; unwinds (and cleans up) exactly as Ctrl-C does."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(signum).name)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention, 128 + the signal number: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


def describe(interrupt: KeyboardInterrupt) -> str:
    if isinstance(interrupt, Terminated):
        return f"terminated by {signal.Signals(interrupt.signum).name}"
    return "interrupted"


def interrupt_for(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


@contextmanager
def terminate_as_interrupt(signals: tuple[int, ...] = TERMINATING) -> Iterator[list[int]]:
    """Within the block, ``signals`` raise :class:`Terminated` in the main thread; the previous
    handlers come back afterwards. A signal the process ignores (``nohup``) stays ignored, and
    outside the main thread (where Python cannot set handlers) nothing changes.

    Yields the signals raised so far, Ctrl-C's included: FFmpeg can run a handler inside its own
    call and drop what it raised (a signal while PyAV opens standard input surfaced as "invalid
    data" once the pipe closed), so a caller meeting another error checks here what was asked."""
    raised: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield raised
        return
    _watched.append(raised)

    def on_signal(signum, _frame):
        if any(s != signal.SIGINT for s in raised):   # already unwinding: a second signal must not cut the cleanup short
            return
        raised.append(signum)
        raise Terminated(signum)

    def on_interrupt(signum, frame):
        raised.append(signum)
        signal.default_int_handler(signum, frame)

    previous = {}
    for sig in signals:
        before = signal.getsignal(sig)
        if before == signal.SIG_IGN:
            continue
        signal.signal(sig, on_signal)
        previous[sig] = signal.SIG_DFL if before is None else before   # None: set outside Python
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_interrupt)
        previous[signal.SIGINT] = signal.default_int_handler
    try:
        yield raised
    finally:
        _watched.remove(raised)
        for sig, before in previous.items():
            signal.signal(sig, before)


def raise_if_signalled() -> None:
    """Raise the interrupt of a signal whose own exception FFmpeg dropped (see
    :func:`terminate_as_interrupt`): for code that catches an error and would go on to more work."""
    if _watched and _watched[-1]:
        raise interrupt_for(_watched[-1][-1]) from None


@contextmanager
def deferred(signals: tuple[int, ...] = (signal.SIGINT, *TERMINATING)) -> Iterator[None]:
    """Hold ``signals`` back for a few file operations that must not stop half-way (publishing the
    output, deleting kept progress): one that arrives meanwhile goes to its handler as the block
    ends. Only signals that Python handles are held (not one left to the system's default)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    previous = {}
    for sig in signals:
        before = signal.getsignal(sig)
        if callable(before):
            previous[sig] = before
            signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)
        if caught:
            signum, frame = caught[0]
            previous[signum](signum, frame)   # raises, as it would have
