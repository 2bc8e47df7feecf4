"""The profile phase of ``make bench``: where one API process spends its CPU under submit load.

``py-spy record --format raw --rate 250 -d <duration> -p <pid>`` on the API process of a
``ranker serve --no-worker`` (its worker in a process of its own) while the load generator runs
``submit`` closed loop. py-spy leaves out threads it finds idle, so every sample is one moment
of the process on a CPU; the collapsed stacks it writes are summed here into areas of the code
and into the functions with the most self time.

How a sample gets its area: its frames are read from the innermost up, and the first frame that
belongs to an area (``AREAS``, tried in order for each frame) decides, so each sample counts once
and the shares add up to 100%. A frame of the standard library or of a library in no area
(anyio, uuid, hashlib) leaves the question to its caller; a frame of ranker's own code in no named
area ends it as ``RANKER_OWN``, so that work the handler does itself is not charged to the
middleware or the decorators that wrap it. A sample whose frames all pass is ``OTHER``.

py-spy cannot attach without the right to trace the process (ptrace); the phase then records
why and the run goes on.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from loadgen.bench.stack import Service, Stack

RATE_HZ = 250
TOP_FUNCTIONS = 15
#: A raw profile at most this big is written beside ``results.json``; a bigger one is not kept.
RAW_KEPT_BYTES = 200_000
RANKER_OWN = "ranker: handlers and domain code"
OTHER = "other"
#: Each area and the frames it owns: a path fragment (matched against ``/`` + the frame's
#: file), or a path fragment and a fragment of the function's qualified name.
AREAS: tuple[tuple[str, tuple[str | tuple[str, str], ...]], ...] = (
    (
        "logging",
        ("/logging/", "/pythonjsonlogger/", "/concurrent_log_handler/", "/ranker/logs.py"),
    ),
    (
        "metrics (prometheus_client)",
        ("/prometheus_client/", "/ranker/metrics.py", ("/ranker/api/guards.py", "observed.")),
    ),
    (
        "response encoding",
        (
            "/starlette/responses.py",
            "/ranker/api/problems.py",
            ("/pydantic/", "dump"),
            ("/pydantic/", "serializ"),
        ),
    ),
    (
        "input validation (pydantic, ranker/api/inputs.py, models)",
        ("/pydantic/", "/pydantic_core/", "/ranker/api/inputs.py", "/ranker/models.py"),
    ),
    ("the Redis call (redis-py)", ("/redis/", "/hiredis", "/ranker/scripts.py")),
    (
        "auth + limits",
        (
            "/ranker/api/guards.py",
            "/ranker/api/auth.py",
            "/ranker/api/abuse.py",
            "/ranker/api/ratelimit.py",
            "/limits/",
        ),
    ),
    ("ranker's middleware", ("/ranker/api/access.py", "/ranker/api/edge.py")),
    ("Starlette routing and middleware", ("/starlette/",)),
    (
        "HTTP parsing / ASGI server",
        ("/uvicorn/", "/httptools/", "/h11/", "/ranker/api/protocol.py"),
    ),
    (
        "event loop (asyncio, uvloop)",
        (
            "/asyncio/runners.py",
            "/asyncio/base_events.py",
            "/asyncio/events.py",
            "/selectors.py",
            "/uvloop/",
        ),
    ),
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?):\d+\)$")

#: ``run(service, seconds)``: one closed-loop submit run of that length, no warm-up in it.
Run = Callable[[Service, float], dict[str, Any]]


def profile_phase(
    stack: Stack, run: Run, duration_s: float, warmup_s: float, phase: Callable[[str], None]
) -> dict[str, Any]:
    """A warm-up run, then a profile of the API process over a measured run of
    ``duration_s`` rounded to whole seconds (py-spy's ``-d`` takes no fraction; at least one):
    the summary (``summarise``), the run's figures, and the raw stacks when small (``raw``);
    or ``error`` saying why no profile was taken."""
    seconds = max(1, round(duration_s))
    service = Service.ranker_with_worker(stack)
    try:
        phase("profile: submit at its maximum, warm-up")
        run(service, warmup_s)
        phase(f"profile: py-spy on the API process for {seconds} s of submit at its maximum")
        return profiled(service, run, seconds)
    finally:
        service.stop()


def profiled(service: Service, run: Run, duration_s: int) -> dict[str, Any]:
    """py-spy started on ``service``'s API process for ``duration_s``, the load run meanwhile."""
    spy = py_spy()
    found: dict[str, Any] = {"rate_hz": RATE_HZ, "duration_s": duration_s}
    if spy is None:
        return found | {"error": "py-spy is not installed (the `test` extra has it)"}
    with tempfile.TemporaryDirectory(prefix="ranker-profile-") as scratch:
        raw_path = Path(scratch) / "submit.txt"
        argv = [spy, "record", "--format", "raw", "--rate", str(RATE_HZ)]
        argv += ["-d", str(duration_s), "-p", str(service.process.pid), "-o", str(raw_path)]
        try:
            recorder = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        except OSError as exc:
            return found | {"error": f"py-spy did not start: {exc}"}
        try:
            found["load"] = run(service, duration_s)
        finally:
            # py-spy stops by itself after -d seconds; a hung one must not hold the run.
            try:
                said, _ = recorder.communicate(timeout=duration_s + 60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                said, _ = recorder.communicate()
        if recorder.returncode != 0 or not raw_path.exists():
            # Its first lines say why (a refused ptrace: "Permission denied"); a backtrace follows.
            why = " ".join((said or "").split())[:300]
            return found | {"error": f"py-spy exited {recorder.returncode}: {why}"}
        raw = raw_path.read_text()
    found |= summarise(raw.splitlines())
    found["raw_bytes"] = len(raw.encode())
    if found["raw_bytes"] < RAW_KEPT_BYTES:
        found["raw"] = raw  # report.write moves it into a file of its own
    return found


def py_spy() -> str | None:
    """The py-spy beside this Python (the virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def frames_of(stack: str) -> list[tuple[str, str]]:
    """(function, file) of each frame of a collapsed stack, outermost first."""
    found = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        found.append((match["function"], match["file"]) if match else (frame, ""))
    return found


def area_of(frames: list[tuple[str, str]]) -> str:
    """The area of one sample (see the module's docstring)."""
    for function, file in reversed(frames):
        path = "/" + file
        for area, owned in AREAS:
            for fragment in owned:
                if isinstance(fragment, str):
                    if fragment in path:
                        return area
                elif fragment[0] in path and fragment[1] in function:
                    return area
        if "/ranker/" in path:
            return RANKER_OWN
    return OTHER


def summarise(lines: Iterable[str]) -> dict[str, Any]:
    """The samples, each area's, and the ``TOP_FUNCTIONS`` by self time (the innermost frame,
    its lines added up), from py-spy's raw lines (``<frame>;<frame>;... <count>``)."""
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), frames_of(stack)
        areas[area_of(frames)] += count
        function, file = frames[-1]
        own[f"{function} ({file})" if file else function] += count
    samples = sum(areas.values())

    def shares(counter: Counter[str], most: int | None = None) -> list[dict[str, Any]]:
        return [
            {"name": name, "samples": n, "share": n / samples}
            for name, n in counter.most_common(most)
        ]

    return {"samples": samples, "areas": shares(areas), "top_self": shares(own, TOP_FUNCTIONS)}


def section(r: dict[str, Any]) -> list[str]:
    """The section of BENCHMARKS.md on the profile."""
    p = r.get("profile")
    if p is None:
        return []
    lines = [
        "",
        "## Where an API process spends its CPU under submit",
        "",
        f"`py-spy record --format raw --rate {p['rate_hz']}` for {p['duration_s']:g} s on the "
        "API process of `ranker serve --no-worker` (its worker in a process of its own) while "
        "the load generator runs `submit` closed loop (`loadgen/bench/profiling.py`).",
    ]
    if "error" in p:
        return [*lines, "", f"No profile was taken in this run: {p['error']}."]
    load = p["load"]
    kept = (
        f"the raw stacks are in `{p['raw_file']}`"
        if p.get("raw_file")
        else f"the raw stacks ({p['raw_bytes']:,} B) were not kept"
    )
    lines += [
        "",
        f"{load['achieved_rate']:,.0f} req/s during the profile; {p['samples']:,} samples on "
        "a CPU. Each sample counts once, in the area of its innermost frame that has one: "
        "frames of the standard library and of libraries in no area pass to their caller, and "
        f'ranker\'s own code in no named area counts as "{RANKER_OWN}" (the redis-py frames '
        "of the rate limiter's Lua call count as the Redis call). py-spy itself runs on the "
        f"same two cores; {kept}.",
        "",
        "| area | share of on-CPU samples | samples |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {a['name']} | {a['share']:.1%} | {a['samples']:,} |" for a in p["areas"]]
    lines += [
        "",
        f"| the {TOP_FUNCTIONS} functions with the most self time | share | samples |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| `{f['name'].replace('|', '/')}` | {f['share']:.1%} | {f['samples']:,} |"
        for f in p["top_self"]
    ]
    return lines
