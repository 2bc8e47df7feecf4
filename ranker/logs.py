"""The log: its format (text or JSON lines), where it goes (stderr, and a rotating file), and
the request id that every line a request causes carries.

The request id lives in a context variable: set by the API's edge for each request
(``ranker.api.access``), it reaches every record logged while the request is served, the
submission's stream entry (``ranker.ranking``) and from there the worker's line for the batch
that persisted it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import sys
from contextvars import ContextVar
from typing import TypeGuard

from concurrent_log_handler import ConcurrentRotatingFileHandler
from pythonjsonlogger.json import JsonFormatter

from ranker.settings import Settings

#: The id of the request being served ("" outside any request).
request_id: ContextVar[str] = ContextVar("request_id", default="")
#: An incoming ``X-Request-ID`` is kept when it is 1 to 64 printable ASCII characters without
#: a space (it goes into log lines and stream entries as it is); any other is replaced.
REQUEST_ID_PATTERN = "^[!-~]{1,64}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "request_id", "message")
#: The logger of the access log: one line per request (``ranker.api.access``).
ACCESS_LOGGER = "ranker.access"
#: The name of the handlers ``configure`` installs (a second call replaces them).
HANDLER_NAME = "ranker"


#: Request ids name requests in logs and traces; they guard nothing, so a seeded generator of
#: this process's own serves (``secrets`` reads the kernel's for each id: a system call per
#: request, 4% of a read's CPU). Its own instance: the global one is not disturbed.
_ids = random.Random(os.urandom(16))
# API processes forked from one parent must not draw the same ids.
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(16)))


def new_request_id() -> str:
    """A fresh request id: 16 hex digits (64 random bits)."""
    return f"{_ids.getrandbits(64):016x}"


def valid_request_id(value: str | None) -> TypeGuard[str]:
    """Whether ``value`` may be kept as a request id."""
    return value is not None and _REQUEST_ID.match(value) is not None


class RequestIdFilter(logging.Filter):
    """Gives every record the id of the request it was logged in (``-`` outside one), so the
    formats can name it; a record that brings its own (``extra``) keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id.get() or "-"
        return True


def formatter(log_format: str) -> logging.Formatter:
    """A text or a JSON-lines formatter; JSON keys: time, level, logger, request_id, message,
    and any ``extra`` fields of the record (an access line's method, path, status...)."""
    if log_format == "json":
        return JsonFormatter(
            " ".join(f"%({name})s" for name in JSON_FIELDS),
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
    return logging.Formatter(TEXT_FORMAT)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is written, not when the handler was
    made (a test's capture replaces it, and closes the one it replaced).

    The access log's lines (``ACCESS_LOGGER``) logged in one turn of a running event loop are
    written together at the start of the next turn, in one write: a loaded API process logs a
    line per request, and a write and flush of its own for each was a tenth of a rank
    lookup's CPU. They wait for no timer (the next turn follows at once) and keep their order.
    Every other record is written at once, after what waits: the last lines of a process
    (uvicorn's shutdown, a crash) are never left waiting for a turn that will not come.
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiting: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            loop = asyncio._get_running_loop()  # None outside a loop, without raising
            if loop is None or record.name != ACCESS_LOGGER:
                self._write(line)
                return
            if not self._waiting:
                loop.call_soon(self.flush)
            self._waiting.append(line)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            self._write("")

    def _write(self, line: str) -> None:
        """Write the waiting lines and ``line`` to stderr (under the handler's lock)."""
        text = "".join(self._waiting) + line
        self._waiting.clear()
        if text:
            self.stream = sys.stderr
            self.stream.write(text)
            self.stream.flush()


def configure(settings: Settings) -> None:
    """Send the root logger's records to stderr and, with ``RANKER_LOG_FILE``, to a file
    rotated by size. The file handler locks around each write and each rotation, so the API
    processes of ``--workers N`` share one file safely. A second call replaces the handlers
    of the first (each process of ``--workers N`` makes its own call)."""
    # The record fields no format of ranker's shows are not collected: the caller's file and
    # line (a walk up the stack), the thread's and the process's names and ids. The logging
    # HOWTO's "Optimization" switches; a record per request (the access line) paid for them.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handlers: list[logging.Handler] = [_Stderr()]
    if settings.log_file is not None:
        handlers.append(
            ConcurrentRotatingFileHandler(
                str(settings.log_file),
                maxBytes=settings.log_file_max_bytes,
                backupCount=settings.log_file_backups,
                encoding="utf-8",
            )
        )
    shape = formatter(settings.log_format)
    for handler in handlers:
        handler.setFormatter(shape)
        handler.addFilter(RequestIdFilter())
        handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    # Only the handlers of an earlier call are replaced: others (a test runner's) stay.
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
