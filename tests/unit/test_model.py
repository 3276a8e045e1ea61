"""The committed ONNX model, its card and the serving wrapper, with real onnxruntime."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import onnx
import pytest
from sklearn.metrics import roc_auc_score

from scripts.train_model import Dataset, collect, heuristic_scores, journey_rows
from shared.entity import PlayerState, apply_events
from shared.events import PlayerEvent, parse
from shared.features import FEATURES, N_FEATURES, Features
from shared.journeys import LABELS, generate
from shared.model import CARD_FILE, DEFAULT_MODEL_PATH, InterventionModel, ModelError, get_model
from shared.policy import ACTION_TYPES, Rules
from shared.signals import Signal

START = datetime(2026, 12, 1, tzinfo=UTC)
HOLDOUT_SEED = 4242


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(DEFAULT_MODEL_PATH.with_name(CARD_FILE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model() -> InterventionModel:
    return get_model()


@pytest.fixture(scope="module")
def holdout(card: dict) -> Dataset:
    """A small fresh holdout from a seed the model never saw, through the real entity path."""
    assert HOLDOUT_SEED not in {d["seed"] for d in card["datasets"]}
    return collect(generate(120, HOLDOUT_SEED, START, timedelta(days=4)))


def test_card_matches_code(card: dict, model: InterventionModel) -> None:
    assert tuple(card["features"]) == FEATURES
    assert tuple(card["labels"]) == LABELS
    assert model.version == card["model_version"] and model.version.startswith("pi-")
    assert set(card["metrics"]["holdout_auc"]) == set(ACTION_TYPES)
    assert DEFAULT_MODEL_PATH.stat().st_size < 2 * 1024 * 1024


def test_onnx_graph_has_one_probability_output() -> None:
    graph = onnx.load(str(DEFAULT_MODEL_PATH)).graph
    assert [i.name for i in graph.input] == ["features"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not dims[0].dim_value and dims[1].dim_value == N_FEATURES
    assert [o.name for o in graph.output] == ["probabilities"]


def test_get_model_is_one_instance_per_process() -> None:
    assert get_model() is get_model() is get_model(DEFAULT_MODEL_PATH)


def named(row: np.ndarray | list[float]) -> Features:
    """A training row (FEATURES order) as the named features the entity computes."""
    return Features(**{name: float(v) for name, v in zip(FEATURES, row, strict=True)})


def test_score_gives_action_probabilities_and_reasons(model: InterventionModel, holdout: Dataset) -> None:
    for row in holdout.X[:: max(1, len(holdout.X) // 200)]:
        scores, reasons, vector = model(named(row))
        assert vector == pytest.approx(list(map(float, row)))  # the committed card's order is FEATURES
        assert set(scores) == set(ACTION_TYPES)
        assert all(0.0 <= p <= 1.0 for p in scores.values())
        assert sum(scores.values()) <= 1.0 + 1e-5
        assert 1 <= len(reasons) <= 3 and set(reasons) <= set(FEATURES)
        assert not set(reasons) & set(model.card["excluded_features"])


def test_score_batch_matches_single_scores(model: InterventionModel, holdout: Dataset) -> None:
    batch = model.score_batch(holdout.X[:50])
    assert batch.shape == (50, len(LABELS))
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=1e-5)
    single = model.score(named(holdout.X[7])).scores
    assert single["break_suggestion"] == pytest.approx(
        float(batch[7, LABELS.index("break_suggestion")]), abs=1e-6
    )


def test_wrong_width_is_refused(model: InterventionModel) -> None:
    with pytest.raises(ValueError):
        model.score_vector([0.0] * (N_FEATURES - 1))
    with pytest.raises(ValueError):
        model.score_batch(np.zeros((2, N_FEATURES + 1), dtype=np.float32))


def _copy_model(tmp_path: Path, card: dict) -> Path:
    target = tmp_path / DEFAULT_MODEL_PATH.name
    shutil.copyfile(DEFAULT_MODEL_PATH, target)
    (tmp_path / CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    return target


def test_load_fails_fast_when_the_card_names_other_features(tmp_path: Path, card: dict) -> None:
    renamed = dict(card, features=["stake_median", *FEATURES[1:]])
    with pytest.raises(ModelError, match="missing \\['events_in_buffer'\\], unexpected \\['stake_median'\\]"):
        InterventionModel(_copy_model(tmp_path, renamed))
    twice = dict(card, features=[FEATURES[0], *FEATURES[:-1]])
    with pytest.raises(ModelError, match="a name twice"):
        InterventionModel(_copy_model(tmp_path, twice))


def _permuted_model(tmp_path: Path, card: dict, order: list[str]) -> Path:
    """The committed model retrained, in effect, on columns in ``order``: a Gather puts each column
    back where the original graph expects it, and the card lists ``order``."""
    original = onnx.load(str(DEFAULT_MODEL_PATH))
    back = [order.index(name) for name in FEATURES]  # original column i comes from input column back[i]
    gather = onnx.helper.make_graph(
        [onnx.helper.make_node("Gather", ["features", "idx"], ["reordered"], axis=1)],
        "reorder",
        [onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, N_FEATURES])],
        [onnx.helper.make_tensor_value_info("reordered", onnx.TensorProto.FLOAT, [None, N_FEATURES])],
        [onnx.helper.make_tensor("idx", onnx.TensorProto.INT64, [N_FEATURES], back)],
    )
    pre = onnx.helper.make_model(
        gather, opset_imports=list(original.opset_import), ir_version=original.ir_version
    )
    renamed = onnx.compose.add_prefix(original, "m_")
    merged = onnx.compose.merge_models(pre, renamed, io_map=[("reordered", "m_features")])
    merged.graph.output[0].name = card["output"]["name"]
    for node in merged.graph.node:
        node.output[:] = [
            card["output"]["name"] if o == "m_" + card["output"]["name"] else o for o in node.output
        ]
    data = merged.SerializeToString()
    target = tmp_path / DEFAULT_MODEL_PATH.name
    target.write_bytes(data)
    permuted = dict(card, features=order, onnx_sha256=hashlib.sha256(data).hexdigest())
    (tmp_path / CARD_FILE).write_text(json.dumps(permuted), encoding="utf-8")
    return target


def test_the_row_is_built_by_name_so_a_permuted_feature_order_scores_the_same(
    tmp_path: Path, card: dict, model: InterventionModel, holdout: Dataset
) -> None:
    """A model whose card lists the features in another order gets every value in the column of its
    name: its scores equal the committed model's. Built by position, they would not."""
    order = list(FEATURES)
    random.Random(7).shuffle(order)
    assert order != list(FEATURES)
    permuted = InterventionModel(_permuted_model(tmp_path, card, order))
    assert permuted.features == tuple(order)
    moved = 0
    for row in holdout.X[:: max(1, len(holdout.X) // 100)]:
        features = named(row)
        got, want = permuted.score(features), model.score(features)
        assert got.vector == [getattr(features, name) for name in order]
        assert got.scores == pytest.approx(want.scores, abs=1e-6)
        positional = permuted.score_vector([float(v) for v in row])  # the old, positional build
        moved += max(abs(positional[a] - want.scores[a]) for a in ACTION_TYPES) > 1e-3
    assert moved > 0  # the permutation matters: a positional row would have scored differently


def test_load_fails_fast_when_onnx_is_not_the_carded_file(tmp_path: Path, card: dict) -> None:
    with pytest.raises(ModelError, match="not the file"):
        InterventionModel(_copy_model(tmp_path, dict(card, onnx_sha256="0" * 64)))


@pytest.mark.parametrize("action", ACTION_TYPES)
def test_holdout_auc_beats_the_heuristic(model: InterventionModel, holdout: Dataset, action: str) -> None:
    k = LABELS.index(action)
    positive = (holdout.y == k).astype(int)
    assert 30 <= positive.sum() < len(positive)
    auc = roc_auc_score(positive, model.score_batch(holdout.X)[:, k])
    baseline = roc_auc_score(positive, heuristic_scores(holdout.X, action))
    assert auc >= 0.75 and auc > baseline, (auc, baseline)


def test_tilting_scores_higher_for_break_than_fine() -> None:
    model = get_model()
    tilting = next(
        j for j in generate(20, 77, START, timedelta(days=3), mix={"tilt_prone": 1.0}) if "tilting" in j.truth
    )
    steady = generate(3, 78, START, timedelta(days=3), mix={"steady": 1.0})
    rows, labels, _ = journey_rows(tilting)
    tilt_rows = [r for r, y in zip(rows, labels, strict=True) if LABELS[y] == "break_suggestion"]
    late = tilt_rows[len(tilt_rows) // 2 :]
    fine_rows = [r for j in steady for r, y in zip(*journey_rows(j)[:2], strict=True) if LABELS[y] == "none"]
    assert late and fine_rows
    k = LABELS.index("break_suggestion")
    late_score = float(model.score_batch(np.asarray(late)).mean(axis=0)[k])
    fine_score = float(model.score_batch(np.asarray(fine_rows)).mean(axis=0)[k])
    assert late_score > fine_score + 0.3, (late_score, fine_score)


def test_model_as_the_entity_scorer_suggests_breaks_to_a_tilting_player() -> None:
    """End to end through shared.state with the real model and default policy."""
    model = get_model()
    journey = next(
        j for j in generate(20, 91, START, timedelta(days=3), mix={"tilt_prone": 1.0}) if "tilting" in j.truth
    )
    state = PlayerState()
    actions = []
    for event in journey.events:
        parsed = parse(msgspec.json.encode(event), now_ms=journey.times_ms[-1] + 1)
        if isinstance(parsed, PlayerEvent):
            signal = parsed.to_signal()
            effects = apply_events(
                state, journey.player_id, Signal([signal]), signal.t, model.score, Rules(), model.version
            )
            actions.extend(effects.actions)
    assert any(a.type == "break_suggestion" for a in actions)
    assert all(a.model == model.version for a in actions)
    assert all(any(r.startswith("feature:") for r in a.reasons) for a in actions)
    assert all(len(a.features) == N_FEATURES for a in actions)
