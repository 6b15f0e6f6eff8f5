"""A logging filter that keeps the first of a run of the same error and then at most one per interval.

Some errors repeat as fast as requests or polls arrive while their cause lasts (huey's consumer while Redis is down,
every transcription of a user whose adapter file is damaged); the log keeps the first with its traceback and then one
line per interval saying how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Tuple

__all__ = ["MAX_TRACKED_ERRORS", "RepeatedErrors", "by_format", "by_message"]

MAX_TRACKED_ERRORS = 1024
"""Distinct errors a filter tracks at once (the least recently seen is forgotten first)."""


def by_format(record: logging.LogRecord) -> str:
    """Errors of one logger with one format string are the same error, whatever their arguments."""
    return f"{record.name}: {record.msg}"


def by_message(record: logging.LogRecord) -> str:
    """Errors are the same only when their whole message is (e.g. one damaged file, not every file)."""
    return f"{record.name}: {record.getMessage()}"


class RepeatedErrors(logging.Filter):
    """Keeps the first record of a run of the same error (with its traceback), then at most one per ``interval``
    seconds, saying how many were left out; records below ``ERROR`` always pass.

    Args:
        interval: seconds between two kept records of one error.
        same_error: what makes two records the same error (:func:`by_format` or :func:`by_message`).
    """

    def __init__(self, interval: float, same_error: Callable[[logging.LogRecord], str] = by_format) -> None:
        super().__init__()
        self.interval = interval
        self._same_error = same_error
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, Tuple[float, int]] = OrderedDict()  # error -> (when last kept, left out since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        key = self._same_error(record)
        now = time.monotonic()
        with self._lock:
            kept_at, left_out = self._runs.pop(key, (None, 0))  # put back last: the most recently seen
            if kept_at is not None and now - kept_at < self.interval:
                self._runs[key] = (kept_at, left_out + 1)
                return False
            self._runs[key] = (now, 0)
            while len(self._runs) > MAX_TRACKED_ERRORS:
                self._runs.popitem(last=False)
        if left_out:
            record.msg = f"{record.msg} ({left_out} more in the last {self.interval:g} s; tracebacks left out)"
            record.exc_info, record.exc_text = None, None
        return True
