"""The app factory uvicorn imports in every API process (``ranker serve``)."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from ranker.app import BackgroundService, create_app
from ranker.settings import Settings

#: Set by ``ranker serve --no-worker``: API processes run neither the worker nor the watchdog.
NO_WORKER_ENV = "RANKER_SERVE_NO_WORKER"


def app() -> Starlette:
    """The API with the write-behind worker and the rebuild watchdog beside it."""
    settings = Settings()
    background: list[BackgroundService] = []
    if not os.environ.get(NO_WORKER_ENV):
        # Imported here, not at the top: the request path never depends on the worker.
        from persistence.service import Persistence

        background.append(Persistence(settings))
    return create_app(settings, background)
