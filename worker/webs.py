"""`settle web` as several processes on one port (WEB_PROCESSES), for machines with more
cores than one Python process can use.

Each child listens on the same port with SO_REUSEPORT, and the kernel spreads new
connections over them; each has its own pool and intake, so every guarantee of one
`web` holds for each. The parent only forks and supervises: SIGTERM or SIGINT is passed
to every child, and when one child ends on its own the others are stopped too, so the
platform sees the process fail and restarts it whole.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType


def run_several(count: int, serve: Callable[[], None]) -> None:
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the child: no loop, thread or connection exists yet to inherit
            code = 0
            try:
                serve()
            except BaseException:  # logged by the service; the parent sees the code
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def stop(signum: int, _: FrameType | None) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while children:
        pid, status = os.wait()
        if pid in children:
            children.remove(pid)
            if os.waitstatus_to_exitcode(status) != 0 and not failed:
                failed = True
                stop(signal.SIGTERM, None)
            elif children and not failed:
                # One left on its own (not by our signal): take the rest down with it.
                stop(signal.SIGTERM, None)
    sys.exit(1 if failed else 0)
