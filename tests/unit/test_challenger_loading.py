"""CHALLENGER_MODEL: loaded by the champion's loader, scored on the same row by feature name, and a
model that does not fit is refused with an error naming the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.features import FEATURES, Features
from shared.model import CARD_FILE, DEFAULT_MODEL_PATH, ModelError, get_challenger, get_model
from tests.challenger_model import break_happy


def features(**values: float) -> Features:
    row = dict.fromkeys(FEATURES, 0.0)
    row.update(values)
    return Features(**row)


def test_off_when_empty() -> None:
    assert get_challenger(None) is None and get_challenger("") is None


def test_the_champion_file_as_challenger_scores_exactly_as_the_champion() -> None:
    challenger = get_challenger(DEFAULT_MODEL_PATH)
    assert challenger is not None and challenger.version == get_model().version
    f = features(loss_streak=6.0, rounds_last_30m=40.0, net_loss=120.0)
    assert challenger.scores(f) == get_model().score(f).scores


def test_a_different_model_scores_differently_and_by_feature_name(tmp_path: Path) -> None:
    challenger = get_challenger(break_happy(tmp_path))
    assert challenger is not None and challenger.version == "challenger-break-happy"
    calm, tilted = challenger.scores(features()), challenger.scores(features(loss_streak=8.0))
    assert tilted["break_suggestion"] > calm["break_suggestion"]  # its one weight, found by name
    assert calm != get_model().score(features()).scores


def test_a_challenger_that_needs_a_feature_the_row_lacks_is_refused(tmp_path: Path) -> None:
    path = break_happy(tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    card["features"] = [*card["features"][:-1], "heart_rate"]
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="CHALLENGER_MODEL .*unexpected \\['heart_rate'\\]"):
        get_challenger(str(path))


def test_a_file_that_is_not_its_cards_is_refused(tmp_path: Path) -> None:
    path = break_happy(tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="CHALLENGER_MODEL .*not the file its model card describes"):
        get_challenger(str(path))
