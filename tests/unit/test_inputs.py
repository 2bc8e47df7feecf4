"""Reading a submit body (ranker/api/inputs.py): JSON that parsers read differently is a 400
naming what is ambiguous, never a guess; whatever the body, the error is a 4xx, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.api.inputs import parse_submit
from ranker.errors import InvalidInput
from ranker.models import Limits

LIMITS = Limits(score_min=0, score_max=1_000_000, game_modes=("solo", "team"))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"user_id": 1, "score": 5, "score": 900000}', "score"),
        (b'{"user_id": 1, "user_id": 2, "score": 5}', "user_id"),
        (b'{"user_id": 1, "score": 5, "session_id": "a", "session_id": "b"}', "session_id"),
        (b'{"user_id": 1, "score": NaN}', "body"),
        (b'{"user_id": 1, "score": Infinity}', "body"),
        (b'{"user_id": 1, "score": -Infinity}', "body"),
        (b'{"user_id": 1, "score": 1e400}', "body"),
    ],
)
def test_ambiguous_json_is_a_400_naming_what_is_ambiguous(body: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_submit(body, LIMITS)

    assert refused.value.status == 400
    assert [e.field for e in refused.value.errors] == [field]


def test_deeply_nested_json_is_refused_as_a_4xx() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_submit(b"[" * 3000 + b"]" * 3000, LIMITS)

    assert 400 <= refused.value.status < 500


def test_plain_json_still_parses() -> None:
    parsed = parse_submit(b'{"user_id": 1, "score": 5.0, "game_mode": "team"}', LIMITS)

    assert (parsed.user_id, parsed.score, parsed.game_mode) == (1, 5, "team")


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_no_body_is_anything_but_a_4xx(body: bytes) -> None:
    try:
        parse_submit(body, LIMITS)
    except InvalidInput as refused:
        assert 400 <= refused.status < 500
