from __future__ import annotations

import pytest
from pydantic import ValidationError

from ranker.models import Limits, SubmitRequest

LIMITS = Limits(score_min=0, score_max=100, game_modes=("solo", "team"))


def parse(body: bytes) -> SubmitRequest:
    return SubmitRequest.model_validate_json(body, context=LIMITS)


def test_a_minimal_submission_is_accepted() -> None:
    request = parse(b'{"user_id": 1, "score": 100}')

    assert (request.user_id, request.score, request.game_mode, request.session_id) == (
        1,
        100,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"user_id": 1, "score": 101}', "score"),
        (b'{"user_id": 1, "score": 1, "game_mode": "duo"}', "game_mode"),
        (b'{"user_id": 1.5, "score": 1}', "user_id"),
        (b'{"user_id": 9007199254740994.0, "score": 1}', "user_id"),
        (b'{"user_id": true, "score": 1}', "user_id"),
        (b'{"user_id": "1", "score": 1}', "user_id"),
        (b'{"user_id": 1, "score": 2.5}', "score"),
        (b'{"user_id": 1, "score": 1, "extra": 0}', "extra"),
        (b'{"user_id": 1, "score": 1, "session_id": "../../x"}', "session_id"),
    ],
)
def test_each_violation_names_its_field(body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(body)

    assert [err["loc"][0] for err in caught.value.errors()] == [field]


@pytest.mark.parametrize(
    ("body", "user_id", "score"),
    [(b'{"user_id": 7.0, "score": 5.0}', 7, 5), (b'{"user_id": 1e3, "score": 1E1}', 1000, 10)],
)
def test_whole_numbers_written_as_decimals_are_those_integers(
    body: bytes, user_id: int, score: int
) -> None:
    # JSON, and the schema's "integer", do not tell 7.0 from 7.
    request = parse(body)
    assert (request.user_id, request.score) == (user_id, score)
    assert type(request.user_id) is int and type(request.score) is int
