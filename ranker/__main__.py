"""``python -m ranker``: the same as the ``ranker`` command."""

import sys

from ranker.cli.main import main

sys.exit(main())
