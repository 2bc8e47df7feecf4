"""An open-loop HTTP load generator for ranker.

``python -m loadgen --workload mix --rate 1000`` sends requests on a fixed schedule (open loop:
a slow answer never delays the next request, so stalls show up as latency), or as fast as N
connections allow with ``--connections N`` (closed loop). The programmatic API is
``loadgen.runner``: ``LoadConfig``, ``run_load`` / ``run`` and ``LoadResult``.

It talks to ranker only over HTTP, and imports nothing from ``ranker`` but its public models.
"""
