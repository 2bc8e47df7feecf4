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
        (b'{"user_id": 1.0, "score": 1}', "user_id"),
        (b'{"user_id": 1, "score": 1, "extra": 0}', "extra"),
        (b'{"user_id": 1, "score": 1, "session_id": "../../x"}', "session_id"),
    ],
)
def test_each_violation_names_its_field(body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(body)

    assert [err["loc"][0] for err in caught.value.errors()] == [field]
