"""Test configuration: fixtures live in plugin modules under ``tests/fixtures``."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.ranker",
    "tests.fixtures.own_postgres",
]
