"""``make bench``: ranker measured beside its floor and beside the design it replaces.

Unlike the load driver (the rest of ``loadgen``), this harness may use ranker's internals: it
seeds PostgreSQL, reads Redis directly, starts the throwaway servers of ``ranker.dev`` and measures
the floors that ranker's figures are compared with (docs/design.md, "Architecture").
"""
