"""The PostgreSQL side of ranker: repository, write-behind worker, rebuild, verify, migrations."""
