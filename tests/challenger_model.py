"""A second ONNX model for the challenger tests: a small multinomial logistic model written with
``onnx.helper`` (no training: milliseconds), with a model card the champion's loader accepts.

Its scores differ from the champion's on purpose (``bias`` and ``weights`` choose how), so the
shadow aggregates must show disagreement; the champion file itself serves as the agreeing challenger.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.features import FEATURES
from shared.model import CARD_FILE, DEFAULT_MODEL_PATH

LABELS = ("none", "break_suggestion", "help_offer", "bonus_offer")


def write_linear_model(
    out_dir: Path,
    bias: Mapping[str, float],
    weights: Mapping[tuple[str, str], float] | None = None,
    version: str = "challenger-linear-1",
) -> Path:
    """softmax(x @ W + b) over LABELS; ``weights`` maps (feature, label) to a coefficient."""
    card = json.loads(DEFAULT_MODEL_PATH.with_name(CARD_FILE).read_text(encoding="utf-8"))
    features = list(card["features"])
    assert sorted(features) == sorted(FEATURES)
    w = np.zeros((len(features), len(LABELS)), dtype=np.float32)
    for (feature, label), value in (weights or {}).items():
        w[features.index(feature), LABELS.index(label)] = value
    b = np.array([bias.get(label, 0.0) for label in LABELS], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "challenger",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, len(features)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(LABELS)])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "challenger.onnx"
    path.write_bytes(data)
    card.update(
        model_version=version,
        onnx_file=path.name,
        onnx_sha256=hashlib.sha256(data).hexdigest(),
        onnx_bytes=len(data),
        labels=list(LABELS),
        algorithm={"name": "multinomial logistic (test fixture)"},
    )
    (out_dir / CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    return path


# Suggests breaks far more than the champion, and never a bonus.
def break_happy(out_dir: Path) -> Path:
    return write_linear_model(
        out_dir,
        {"none": 0.0, "break_suggestion": 1.2, "help_offer": -3.0, "bonus_offer": -6.0},
        {("loss_streak", "break_suggestion"): 0.3},
        version="challenger-break-happy",
    )
