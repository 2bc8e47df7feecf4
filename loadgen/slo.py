"""Service level objectives (``--slo``): what a run must achieve, and whether it did.

``--slo 'p99<50ms,errors<0.1%,rate>900'`` names objectives separated by commas, each a measure,
a bound (``<`` or ``<=`` for latencies and errors, ``>`` or ``>=`` for the rate) and a value:

- a latency of the report (``p50``, ``p90``, ``p95``, ``p99``, ``p99.9``, ``max``, ``mean``) in
  ``us``, ``ms`` or ``s``; ``submit.p99<20ms`` bounds one request kind's. Latency is that of the
  answers (any status); a request with no answer at all has none, and counts as an error.
- ``errors``, in ``%``: requests that failed, as the report counts them (an error status other
  than the expected 404 of rank/around, or no answer at all), plus the requests dropped (due
  while ``--max-in-flight`` were outstanding, never sent), as a share of every request due in the
  window. A dropped request got no answer either: a run that sheds its load does not pass.
- ``rate``, in requests/s (``/s`` optional): the achieved rate of the report.

The measures are the final report's own (``LoadResult``): nothing is counted twice.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loadgen.runner import LoadResult
from loadgen.stats import PERCENTILES
from loadgen.workload import KINDS

LATENCIES = (*PERCENTILES, "max", "mean")
MEASURES = (*LATENCIES, "errors", "rate")
#: Each unit of latency in milliseconds, the unit of the report.
LATENCY_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
UPPER, LOWER = ("<", "<="), (">", ">=")
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_OBJECTIVE = re.compile(
    r"(?:(?P<kind>[a-z][a-z-]*)\.)?(?P<measure>[a-z][a-z0-9.]*?)"
    r"\s*(?P<op><=|>=|<|>)\s*(?P<value>.*)"
)
_VALUE = re.compile(r"(?P<number>[0-9.e+-]*)\s*(?P<unit>\S*)")


class SloError(ValueError):
    """An ``--slo`` that cannot be used: its message names the objective and what is wrong."""


@dataclass(frozen=True)
class Objective:
    """One objective: ``measure`` (of ``kind``'s requests, or of all) ``op`` ``bound``.

    ``bound`` is in the measure's unit: milliseconds, percent, or requests/s.
    """

    text: str  # as given, without spaces: "p99<50ms"
    measure: str
    op: str
    bound: float
    kind: str | None = None

    @property
    def name(self) -> str:
        """What is bounded: ``p99``, ``submit.p99``, ``errors``."""
        return self.measure if self.kind is None else f"{self.kind}.{self.measure}"


@dataclass(frozen=True)
class Outcome:
    """An objective and what the run measured for it (None: nothing was measured)."""

    objective: Objective
    measured: float | None
    shown: str  # the measured value as a person reads it: "3.21 ms", "0.2% (2 of 1000)"
    met: bool

    def to_dict(self) -> dict[str, Any]:
        """The outcome as plain JSON types."""
        return {"objective": self.objective.text, "measured": self.measured, "met": self.met}


def parse_slo(text: str) -> tuple[Objective, ...]:
    """Parse ``"p99<50ms,errors<0.1%"`` into objectives.

    Raises ``SloError`` for an empty list or entry, an unknown measure or kind, a bound the wrong
    way round (``p99>5ms``), a value without its unit or not a finite number, a bound no run can
    meet (``errors<0%``), a per-kind objective other than a latency, or a measure named twice.
    """
    objectives: list[Objective] = []
    for part in (piece.strip() for piece in text.split(",")):
        objective = _parse_one(part)
        if any(known.name == objective.name for known in objectives):
            raise SloError(f"{objective.name!r} is bounded twice")
        objectives.append(objective)
    return tuple(objectives)


def _parse_one(part: str) -> Objective:
    if not part:
        raise SloError("empty objective: expected e.g. p99<50ms,errors<0.1%")
    found = _OBJECTIVE.fullmatch(part.lower())
    if found is None:
        raise SloError(f"bad objective {part!r}: expected measure<value, e.g. p99<50ms")
    kind, measure, op, value = found.group("kind", "measure", "op", "value")
    text = re.sub(r"\s+", "", part.lower())
    if measure not in MEASURES:
        raise SloError(f"unknown measure {measure!r} in {part!r}; one of {', '.join(MEASURES)}")
    if kind is not None and kind not in KINDS:
        raise SloError(f"unknown kind {kind!r} in {part!r}; kinds are {', '.join(KINDS)}")
    if kind is not None and measure not in LATENCIES:
        raise SloError(f"bad objective {part!r}: only latencies may be given per kind")
    if measure == "rate" and op not in LOWER:
        raise SloError(f"bad objective {part!r}: the rate is a lower bound (rate>N)")
    if measure != "rate" and op not in UPPER:
        raise SloError(f"bad objective {part!r}: {measure} is an upper bound ({measure}<...)")
    bound = _bound(part, measure, op, value)
    return Objective(text=text, measure=measure, op=op, bound=bound, kind=kind)


def _bound(part: str, measure: str, op: str, value: str) -> float:
    """The value of an objective in its measure's unit."""
    pieces = _VALUE.fullmatch(value.strip())
    number_text, unit = pieces.group("number", "unit") if pieces else ("", value)
    try:
        number = float(number_text)
    except ValueError:
        raise SloError(f"bad objective {part!r}: {value.strip()!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise SloError(f"bad objective {part!r}: the value must be a finite number >= 0")
    if measure == "rate":
        if unit not in ("", "/s", "req/s"):
            raise SloError(f"bad objective {part!r}: a rate is in requests/s (rate>900)")
        return number
    if measure == "errors":
        if unit != "%":
            raise SloError(f"bad objective {part!r}: errors are a share in %, e.g. errors<0.1%")
        if number > 100:
            raise SloError(f"bad objective {part!r}: a share is at most 100%")
    elif unit not in LATENCY_UNITS_MS:
        hint = "give a unit" if not unit else f"unknown unit {unit!r}"
        raise SloError(f"bad objective {part!r}: {hint}: us, ms or s, e.g. {measure}<50ms")
    else:
        number *= LATENCY_UNITS_MS[unit]
    if number == 0 and op == "<":
        raise SloError(f"bad objective {part!r}: nothing is below 0, so it can never be met")
    return number


def check_kinds(objectives: Iterable[Objective], kinds: Sequence[str]) -> None:
    """Raise ``SloError`` when an objective bounds a kind that the run does not send."""
    for objective in objectives:
        if objective.kind is not None and objective.kind not in kinds:
            raise SloError(
                f"{objective.text!r}: this run sends no {objective.kind} requests "
                f"(it sends {', '.join(kinds)})"
            )


def evaluate(objectives: Iterable[Objective], result: LoadResult) -> list[Outcome]:
    """Each objective with what ``result`` measured; one measured on nothing is missed."""
    outcomes = []
    for objective in objectives:
        measured, shown = _measure(objective, result)
        met = measured is not None and COMPARE[objective.op](measured, objective.bound)
        outcomes.append(Outcome(objective, measured, shown, met))
    return outcomes


def _measure(objective: Objective, result: LoadResult) -> tuple[float | None, str]:
    if objective.measure == "rate":
        return result.achieved_rate, f"{result.achieved_rate:.1f} req/s"
    if objective.measure == "errors":
        due = result.count + result.dropped
        bad = result.failed + result.dropped
        if due == 0:
            return None, "no requests measured"
        share = 100 * bad / due
        dropped = f", {result.dropped} of them dropped" if result.dropped else ""
        return share, f"{share:.3g}% ({bad} of {due} requests{dropped})"
    if objective.kind is None:
        answers, summary = sum(result.kind_counts.values()), result.latency_ms
    else:
        answers = result.kind_counts.get(objective.kind, 0)
        summary = result.per_kind.get(objective.kind, {})
    if answers == 0:
        return None, "no answers measured"
    latency = summary[objective.measure]
    return latency, f"{latency:.2f} ms"


def format_outcomes(outcomes: Sequence[Outcome], bottleneck: str | None = None) -> str:
    """One line per objective: ``slo        p99<50ms  met     3.21 ms``.

    When the loadgen was the bottleneck (the report's verdict), a missed latency or rate says
    so: a loadgen behind its schedule or out of CPU slows both down itself. (An error is the
    service's answer, or a drop that the errors line counts apart.)
    """
    width = max((len(outcome.objective.text) for outcome in outcomes), default=0)
    lines = []
    for outcome in outcomes:
        verdict = "met" if outcome.met else "MISSED"
        line = f"slo        {outcome.objective.text:<{width}}  {verdict:<6}  {outcome.shown}"
        if bottleneck and not outcome.met and outcome.objective.measure != "errors":
            line += "  (loadgen was the bottleneck)"
        lines.append(line)
    return "\n".join(lines)
