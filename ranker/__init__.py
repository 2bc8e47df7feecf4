"""ranker: live game leaderboards.

The package root is the core that the API (``ranker.api``) and the PostgreSQL side
(``persistence``) share; ``ranker.cli`` composes them, ``ranker.dev`` starts throwaway servers.
See docs/design.md, "Architecture".
"""

__version__ = "0.1.0"
