"""The HTTP service: the Starlette app (``app``), its routes, input parsing, problem responses,
API keys, rate limits and the OpenAPI document. It never imports ``persistence``: the worker
reaches it only as a ``BackgroundService`` handed in by ``ranker.cli``."""
