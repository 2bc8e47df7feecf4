"""The configuration of a run, checked when it is made."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from loadgen.workload import DEFAULT_MIX, WORKLOADS, check_mix, check_mode


@dataclass
class LoadConfig:
    """One run: what to send, to which service, how fast and for how long.

    ``rate`` (requests/s) selects the open loop; without it the run is a closed loop of
    ``connections`` senders. ``mix`` is only used by the ``mix`` workload. Raises
    ``ValueError`` naming the first setting that cannot be used.
    """

    url: str = "http://127.0.0.1:8000"
    workload: str = "mix"
    rate: float | None = None
    connections: int = 0
    duration_s: float = 10.0
    warmup_s: float = 1.0
    players: int = 10_000
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    limit: int = 10
    modes: Sequence[str] = ("solo", "team")
    max_in_flight: int = 2000
    seed: int | None = None
    request_timeout_s: float = 10.0
    api_key: str | None = field(default=None, repr=False)  # sent as a Bearer token

    @property
    def headers(self) -> dict[str, str]:
        """The headers of every request of the run."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def __post_init__(self) -> None:
        self.modes = tuple(self.modes)
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {self.url!r}")
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}; one of {', '.join(WORKLOADS)}")
        if self.rate is not None and (not math.isfinite(self.rate) or self.rate <= 0):
            raise ValueError(f"rate must be a finite number > 0, not {self.rate}")
        if self.rate is None and self.connections < 1:
            raise ValueError("a closed loop (no rate) needs connections >= 1")
        _check_positive(
            duration_s=self.duration_s,
            players=self.players,
            limit=self.limit,
            max_in_flight=self.max_in_flight,
            request_timeout_s=self.request_timeout_s,
        )
        if self.warmup_s < 0 or self.connections < 0:
            raise ValueError("warmup_s and connections must be >= 0")
        if not self.modes:
            raise ValueError("modes must name at least one game mode")
        for mode in self.modes:
            check_mode(mode)
        check_mix(self.mix)

    @property
    def open_loop(self) -> bool:
        """True when requests follow a schedule (``rate`` set)."""
        return self.rate is not None

    def ratios(self) -> dict[str, float]:
        """The ratio of each request kind: the mix, or the one kind of the workload."""
        return dict(self.mix) if self.workload == "mix" else {self.workload: 1.0}


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, not {value}")
