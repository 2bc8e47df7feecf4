"""The entry points (``ranker ...``, ``python -m ranker``) and the only composer: the one place
that joins the API with ``persistence``. Nothing imports it; ``main`` is in ``ranker.cli.main``."""
