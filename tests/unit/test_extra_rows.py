"""scripts/extra_rows.py: the daily summaries' retraining export as extra training rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scripts import extra_rows
from scripts.train_model import Dataset, build_parser
from shared import summary
from shared.features import FEATURES
from shared.journeys import LABELS
from shared.policy import ACTION_TYPES


def write_export(path: Path, names: list[str], rows: list[dict]) -> None:
    lines = [summary.export_header(names, "2030-03-14", 5), *rows]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")


def row(action: str, outcome: str, values: list[float]) -> dict:
    return {"action": action, "outcome": outcome, "score": 0.7, "modelVersion": "pi-x", "features": values}


def test_rows_are_labelled_by_outcome_and_mapped_to_the_codes_feature_order(tmp_path: Path) -> None:
    names = list(reversed(FEATURES))  # an export written in another order is mapped by name
    values = [float(i) for i in range(len(names))]
    write_export(
        tmp_path / "hour-05.jsonl",
        names,
        [
            row("break_suggestion", "accepted", values),
            row("help_offer", "dismissed", values),
            row("bonus_offer", "none", values),  # no answer: says nothing
            row("mystery", "accepted", values),
        ],
    )
    (tmp_path / "sub").mkdir()
    write_export(tmp_path / "sub" / "hour-06.jsonl", names[:-1], [row("help_offer", "accepted", values[:-1])])
    got = extra_rows.load([str(tmp_path)], FEATURES, ACTION_TYPES)
    assert got.labels == ["break_suggestion", "none"]
    assert got.files == 1 and got.skipped == 2  # the file without every feature is skipped whole
    assert got.X[0] == [values[names.index(f)] for f in FEATURES]


def test_extend_appends_rows_to_the_training_data_and_the_option_parses(tmp_path: Path) -> None:
    write_export(tmp_path / "a.jsonl", list(FEATURES), [row("help_offer", "accepted", [1.0] * len(FEATURES))])
    base = Dataset(
        X=np.zeros((2, len(FEATURES)), dtype=np.float32),
        y=np.zeros(2, dtype=np.int64),
        player=np.array([0, 1]),
        players=2,
        events=10,
        routed=8,
    )
    merged, info = extra_rows.extend(base, [str(tmp_path / "a.jsonl")])
    assert merged.X.shape == (3, len(FEATURES)) and list(merged.y) == [0, 0, LABELS.index("help_offer")]
    assert list(merged.player) == [0, 1, 2] and info["rows"] == 1
    args = build_parser().parse_args(
        ["--extra-rows", "blob://summary-exports/2030-03-14/", "--extra-rows", "x"]
    )
    assert args.extra_rows == ["blob://summary-exports/2030-03-14/", "x"]
