"""A seconds-long run of ``make capacity`` (``loadgen.bench.capacity``) at a tiny size: every
step runs on its own fresh stack and every figure comes out positive and of a sane size (the
real figures come from ``make capacity``; nothing here is compared with them)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_bench import run_module


def test_capacity_measures_every_figure_and_renders_its_model(tmp_path: Path) -> None:
    out, markdown = tmp_path / "capacity.json", tmp_path / "CAPACITY.md"
    result = run_module(
        "loadgen.bench.capacity",
        *("--players", "1500", "--sessions", "1500", "--reads", "300"),
        *("--http-rate", "100", "--http-seconds", "0.5", "--warmup", "0.2"),
        *("--out", str(out), "--markdown", str(markdown)),
        *("--bench-results", str(tmp_path / "none.json")),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(out.read_text())
    figures = r["figures"]
    # Past the listpack threshold (128 members), a sorted set member costs tens of bytes.
    assert {b["encoding"] for b in r["writes"]["first"]["redis"]["boards"].values()} == {"skiplist"}
    assert 50 < figures["board_member_bytes"] < 200
    assert 0 < figures["idempotency_key_bytes"] < 1_000
    assert 100 < figures["stream_entry_bytes"] < 2_000
    assert 0 < figures["name_bytes"] < 200
    assert r["writes"]["repeat"]["idempotency_key"]["ttl_s"] > 86_000
    assert figures["redis_submit_us"] > 0
    assert all(us > 0 for us in figures["redis_read_us"].values())
    assert figures["pg_first_us"] > 0 and figures["pg_repeat_us"] > 0
    assert 50 < figures["pg_session_bytes"] < 5_000 and figures["pg_board_row_bytes"] > 0
    assert figures["rebuild_members_per_s"] > 0 and figures["rebuild_keys_per_s"] > 0
    assert r["rebuild"]["members_only"]["sessions_restored"] == 0
    assert r["rebuild"]["sessions_restored"] == 2 * 1500  # every session is in the window
    assert all(run["errors"] == {} and run["requests"] > 0 for run in r["http"].values())
    assert r["rebuild"]["members"] == sum(
        b["members"] for b in r["writes"]["first"]["redis"]["boards"].values()
    )
    assert [step["load"]["players"] for step in r["model"]] == [1_000_000, 10_000_000, 100_000_000]
    text = markdown.read_text()
    for heading in ("## Measured figures", "## The model", "## Settings at each step"):
        assert heading in text
    assert "## The limits that remain" in text
    assert "measured:" in result.stdout and "RANKER_BOARD_SHARDS" in result.stdout
