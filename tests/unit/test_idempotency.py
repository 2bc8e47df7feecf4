"""The idempotency record of a session (``ranker.idempotency``); submit's use of it is in
``test_ranking.py``."""

from __future__ import annotations

from ranker.idempotency import IdempotencyRecord


def test_a_record_survives_its_text_and_only_its_own_session_is_a_retry() -> None:
    record = IdempotencyRecord.of("6d1f7b3e-0000-4000-8000-000000000003", 42, 1200, "team")

    again = IdempotencyRecord.parse(record.text().encode())

    assert again.event_id == "6d1f7b3e-0000-4000-8000-000000000003"
    assert again.is_retry(42, 1200, "team")
    assert not again.is_retry(42, 1201, "team")
    assert not again.is_retry(43, 1200, "team")
    assert not again.is_retry(42, 1200, "solo")
