"""What a figure of the benchmark is held to, and how figures are written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """A target of the benchmark: how its figure is read from the results, and its bound."""

    name: str
    unit: str
    read: Callable[[dict[str, Any]], float]
    op: str  # "<=" or ">="
    bound: float
    runs: Callable[[dict[str, Any]], list[float]] | None = None  # every run, when repeated

    def met(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound


def fmt(value: float) -> str:
    """A figure as the report shows it: whole numbers from 100 on, else two decimals."""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
