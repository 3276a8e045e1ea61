"""The player-intervention model: the ONNX classifier plus the card that explains it.

One ``InferenceSession`` per process (loaded lazily, shared by all threads; a
session's ``run`` is thread-safe) with one intra/inter-op thread: the Functions
host runs several invocations concurrently and each score is a single row, so
thread pools would only contend.

The model card written by ``scripts/train_model.py`` is the contract between
training and serving. The input row is built *by name* in the card's order
(``vector``), so the order of ``shared.features.Features`` never decides a
column. Loading fails fast when the card names features this code does not
compute (or misses some), or when the ONNX file is not the one the card describes.

Scoring a row allocates nothing per call but the runtime's output: each thread
reuses its own input row and work arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from shared.entity.decide import Challenger, Scored
from shared.features import FEATURES, N_FEATURES, Features
from shared.policy import ACTION_TYPES

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL_PATH = MODELS_DIR / "player_intervention.onnx"
CARD_FILE = "model_card.json"
TOP_FEATURES = 3


class ModelError(RuntimeError):
    """The model file or its card does not match this code; the message says how."""


def _session(model_bytes: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _check_card(card: dict[str, Any], model_bytes: bytes, path: Path) -> None:
    features = list(card.get("features", ()))
    if sorted(features) != sorted(FEATURES) or len(set(features)) != len(features):
        missing = [f for f in FEATURES if f not in features]
        extra = [f for f in features if f not in FEATURES]
        raise ModelError(
            f"model card for {path.name} lists features that differ from shared.features.Features "
            f"(missing {missing}, unexpected {extra}, or a name twice); retrain with scripts/train_model.py"
        )
    labels = card.get("labels", [])
    absent = [a for a in ACTION_TYPES if a not in labels]
    if absent:
        raise ModelError(f"model card labels {labels} lack action types {absent}")
    digest = hashlib.sha256(model_bytes).hexdigest()
    if card.get("onnx_sha256") != digest:
        raise ModelError(f"{path.name} (sha256 {digest[:12]}) is not the file its model card describes")
    stats = card.get("feature_stats", {})
    if set(stats) != set(FEATURES):
        raise ModelError("model card feature_stats must cover every feature")


def _check_session(session: ort.InferenceSession, card: dict[str, Any]) -> tuple[str, str]:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"expected one input and one output, got {len(inputs)} and {len(outputs)}")
    width = inputs[0].shape[-1]
    if width != N_FEATURES:
        raise ModelError(f"model input width {width} != {N_FEATURES} features")
    if inputs[0].name != card["input"]["name"] or outputs[0].name != card["output"]["name"]:
        raise ModelError("model input/output names differ from the model card")
    return inputs[0].name, outputs[0].name


class _Scratch(threading.local):
    row: np.ndarray
    out: np.ndarray
    work: np.ndarray
    binding: Any


class InterventionModel:
    """Scores features; ``score`` is the ``Scorer`` that shared.entity calls."""

    def __init__(self, path: Path | str = DEFAULT_MODEL_PATH) -> None:
        path = Path(path)
        model_bytes = path.read_bytes()
        card: dict[str, Any] = json.loads(path.with_name(CARD_FILE).read_text(encoding="utf-8"))
        _check_card(card, model_bytes, path)
        self._session = _session(model_bytes)
        self._input, self._output = _check_session(self._session, card)
        self.card = card
        self.version: str = card["model_version"]
        # The model's column order: the card's, by name.
        self.features: tuple[str, ...] = tuple(card["features"])
        self._row_of = operator.attrgetter(*self.features)
        self.labels: tuple[str, ...] = tuple(card["labels"])
        self._columns = [(action, self.labels.index(action)) for action in ACTION_TYPES]
        stats = card["feature_stats"]
        self._mean = np.array([stats[f]["mean"] for f in self.features], dtype=np.float64)
        std = np.array([stats[f]["std"] for f in self.features], dtype=np.float64)
        self._inv_std = 1.0 / np.where(std > 0, std, 1.0)
        self._importance = np.array([stats[f]["importance"] for f in self.features], dtype=np.float64)
        self._weight = self._inv_std * self._importance
        self._scratch = _Scratch()
        log.info("loaded model %s from %s", self.version, path)

    def vector(self, features: Features) -> tuple[float, ...]:
        """The input row: each feature's value at the column the card gives its name."""
        return self._row_of(features)

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """This thread's input row, output row, work array, and an ONNX I/O binding to the first two
        (the runtime reads and writes them in place: no per-call arrays or name lookups)."""
        scratch = self._scratch
        try:
            return scratch.row, scratch.out, scratch.work, scratch.binding
        except AttributeError:
            row = np.zeros((1, N_FEATURES), dtype=np.float32)
            out = np.zeros((1, len(self.labels)), dtype=np.float32)
            binding = self._session.io_binding()
            binding.bind_cpu_input(self._input, row)
            binding.bind_output(self._output, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
            scratch.row, scratch.out, scratch.work, scratch.binding = row, out, np.zeros(N_FEATURES), binding
            return row, out, scratch.work, binding

    def score(self, features: Features) -> Scored:
        """Per-action probabilities, the features that drove them, and the row that was scored."""
        values = self.vector(features)
        row, out, work, binding = self._buffers()
        row[0] = values
        self._session.run_with_iobinding(binding)
        proba = out[0].tolist()
        scores = {action: proba[col] for action, col in self._columns}
        return Scored(scores, self._top(row[0], work), list(values))

    __call__ = score

    def scores(self, features: Features) -> dict[str, float]:
        """Per-action probabilities only (a challenger in shadow: no explanation, no row kept)."""
        row, out, _, binding = self._buffers()
        row[0] = self.vector(features)
        self._session.run_with_iobinding(binding)
        proba = out[0].tolist()
        return {action: proba[col] for action, col in self._columns}

    def score_vector(self, vector: Sequence[float]) -> dict[str, float]:
        """Probabilities for a row already in the card's order (evaluation, benchmarks)."""
        if len(vector) != N_FEATURES:
            raise ValueError(f"expected {N_FEATURES} features, got {len(vector)}")
        row = np.asarray(vector, dtype=np.float32).reshape(1, N_FEATURES)
        proba = self._session.run([self._output], {self._input: row})[0][0]
        return {action: float(proba[col]) for action, col in self._columns}

    def _top(self, row: np.ndarray, work: np.ndarray, k: int = TOP_FEATURES) -> list[str]:
        np.subtract(row, self._mean, out=work)
        np.abs(work, out=work)
        np.multiply(work, self._weight, out=work)  # |z| x importance
        order = np.argsort(-work, kind="stable")[:k].tolist()
        return [self.features[i] for i in order if work[i] > 0]

    def top_features(self, vector: Sequence[float] | np.ndarray, k: int = TOP_FEATURES) -> list[str]:
        """Names ranked by |z-score| x global importance: unusual values of features the model relies on.

        A cheap, per-row explanation for the action's ``reasons``; features the
        model never uses (importance 0) are never named. ``vector`` is in the card's order.
        """
        return self._top(np.asarray(vector, dtype=np.float64), np.zeros(N_FEATURES), k)

    def score_batch(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities [n, len(labels)] in ``labels`` order, for benchmarks and evaluation."""
        x = np.asarray(matrix, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"expected shape [n, {N_FEATURES}], got {list(x.shape)}")
        return np.asarray(self._session.run([self._output], {self._input: x})[0])


_lock = threading.Lock()
_instances: dict[Path, InterventionModel] = {}
_challengers: dict[str, Challenger] = {}


_default: InterventionModel | None = None


def get_model(path: Path | str | None = None) -> InterventionModel:
    """The process-wide model for ``path`` (default: the committed model), loaded on first use."""
    global _default
    if path is None:
        if _default is None:
            _default = get_model(DEFAULT_MODEL_PATH)
        return _default  # every operation asks: no path resolution (syscalls) on this path
    key = Path(path).resolve()
    model = _instances.get(key)
    if model is None:
        with _lock:
            model = _instances.get(key)
            if model is None:
                model = _instances[key] = InterventionModel(key)
    return model


def get_challenger(path: str | Path | None) -> Challenger | None:
    """The challenger model of ``CHALLENGER_MODEL`` (None: off), loaded once per process by the
    champion's loader: its card must name exactly the features this code computes, so it is scored
    on the same row, mapped by name. A model that does not load raises ModelError naming the setting."""
    if not path:
        return None
    key = str(path)
    challenger = _challengers.get(key)
    if challenger is None:
        try:
            model = get_model(path)
        except (ModelError, OSError, ValueError, KeyError) as exc:
            raise ModelError(f"CHALLENGER_MODEL {key}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # onnxruntime's own errors (an invalid graph)
            raise ModelError(f"CHALLENGER_MODEL {key}: {type(exc).__name__}: {exc}") from exc
        challenger = _challengers[key] = Challenger(model.scores, model.version)
    return challenger
