"""Clean stops of long jobs: SIGTERM (e.g. a preempted job) becomes a flag checked between steps."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Turns SIGTERM (e.g. a preempted job) into a clean stop at the next step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
