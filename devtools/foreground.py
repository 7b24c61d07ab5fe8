"""Run `make run`'s processes in the foreground, and stop every one of them on the way out.

Whatever ends the run — Ctrl-C (SIGINT), SIGTERM, the terminal closing (SIGHUP),
or the pipe we print to closing (`make run | tee log`, tee gone) — the whole tree
is stopped, and a stop asked for is exit 0, not `make: *** Error 130`.

How: the command (honcho) runs in a session of its own, so the terminal's
signals reach only us and honcho is told to stop once, by us; its output comes
through us, so a closed pipe never kills it half-way through stopping its
children; and we are the children's subreaper, so whatever honcho leaves behind
(it starts each process in its own session) is still ours to find and stop.
When we are the terminal's foreground, we take the terminal into a process
group of our own, so Ctrl-C does not interrupt `make` above us either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

PR_SET_CHILD_SUBREAPER = 36
# honcho itself gives its processes 5 s before it kills them.
STOP_WITHIN = 20.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def supervise(command: list[str], env: dict[str, str]) -> int:
    """Run `command`, copy its output to stdout; its exit code, or 0 when we stopped it."""
    _become_subreaper()
    with _own_terminal():
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        stop_asked = False

        def stop(signum: int, _: FrameType | None) -> None:
            nonlocal stop_asked
            if not stop_asked:
                stop_asked = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

        for signum in STOP_SIGNALS:
            signal.signal(signum, stop)
        try:
            _copy_output(child, lambda: stop(signal.SIGTERM, None))
            try:
                code = child.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                code = 1
        finally:
            _stop_descendants()
    return 0 if stop_asked else code


def _copy_output(child: subprocess.Popen[bytes], closed: Callable[[], None]) -> None:
    """Copy the child's output until it ends; when our stdout's reader goes, call
    `closed` (nobody is reading: stop as for Ctrl-C) and keep draining, so the child
    never blocks nor dies of a broken pipe while it stops."""
    assert child.stdout is not None
    source, out = child.stdout.fileno(), sys.stdout.fileno()
    poller = select.poll()
    poller.register(source, select.POLLIN)
    writing = True
    if stat.S_ISFIFO(os.fstat(out).st_mode):
        poller.register(out, 0)  # POLLERR arrives when the reader has gone

    def gone() -> None:
        nonlocal writing
        if writing:
            writing = False
            closed()

    while True:
        for fd, _ in poller.poll():
            if fd == out:
                poller.unregister(out)
                gone()
                continue
            data = os.read(source, 65536)
            if not data:
                return
            if writing:
                try:
                    os.write(out, data)
                except OSError:  # EPIPE
                    gone()


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _descendants() -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The command may hold spaces and parentheses: ppid follows the last ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _stop_descendants() -> None:
    """SIGTERM whatever is left under us, SIGKILL what outlives a grace, and reap it all."""
    deadline = time.monotonic() + 10
    sent: set[int] = set()
    while True:
        _reap()
        left = _descendants()
        if not left:
            return
        late = time.monotonic() > deadline
        for pid in left:
            if late or pid not in sent:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                sent.add(pid)
        time.sleep(0.1)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


@contextlib.contextmanager
def _own_terminal() -> Iterator[None]:
    """Be the terminal's foreground group while we run, so Ctrl-C reaches us alone."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield  # no terminal (piped from a test, a service manager): nothing to take
        return
    try:
        previous = os.tcgetpgrp(tty)
        if previous != os.getpgrp():
            yield  # run in the background: leave the terminal alone
            return
        # Being told to stop by Ctrl-Z or a background read would leave make waiting.
        for signum in (signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP):
            signal.signal(signum, signal.SIG_IGN)
        os.setpgid(0, 0)
        os.tcsetpgrp(tty, os.getpgrp())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(tty, previous)
    finally:
        os.close(tty)
