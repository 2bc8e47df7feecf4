"""The app factory each API process of ``ranker serve --workers N`` imports (N > 1).

uvicorn starts those processes itself and can hand them only an import string, so each builds
its settings from the environment it inherited: the one ``ranker serve`` already validated.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from persistence.archive import Archive
from persistence.moderation import Moderator
from persistence.service import Persistence
from ranker import logs, tracing
from ranker.api.app import create_app
from ranker.api.state import BackgroundService
from ranker.settings import Settings

#: Set by ``ranker serve --no-worker``: API processes run neither the worker nor the watchdog.
NO_WORKER_ENV = "RANKER_SERVE_NO_WORKER"


def app() -> Starlette:
    """The API, with the write-behind worker and the rebuild watchdog beside it."""
    settings = Settings()
    logs.configure(settings)  # a process of its own: the log as `ranker serve` set it up
    tracing.configure(settings, "serve")  # and its traces, with RANKER_OTLP_ENDPOINT set
    archive = Archive(settings)  # reads of past periods that left Redis
    records = Moderator(settings)  # players in PostgreSQL, moderation's completion
    background: list[BackgroundService] = [archive, records]
    if not os.environ.get(NO_WORKER_ENV):
        background.append(Persistence(settings))
    return create_app(settings, background, archive, records)
