"""``make bench``: ranker measured beside its floor and beside the design it replaces."""
