"""Train the player-intervention model on synthetic journeys and export it to ONNX.

Training rows are produced by the serving code itself: every generated event is
serialised, parsed by ``shared.events.parse``, turned into the entity signal and
folded into a ``PlayerState`` by ``shared.entity.apply_events``. A recording
scorer captures the feature vector at each trigger (funnel step 2) and returns
zero probabilities, so the policy never acts. Each row is labelled with the
hidden state of the player at the triggering event. Features, trigger rules and
dedupe are therefore exactly what production computes, not a re-implementation.

Three seeds keep the data apart: train (fit), valid (permutation importance for
the explanation of reasons) and holdout (the metrics on the model card).

    python -m scripts.train_model            # from the repo root

It prints its stages as it goes (a progress bar over the journeys on a terminal,
a plain line every quarter otherwise) and says up front how long the last
training took. When the exported ONNX bytes equal the model already in
``--out-dir``, nothing is written (the model card keeps its version and date), so
retraining an unchanged model leaves a clean working tree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

import msgspec
import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common import tree_ensemble
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score

from shared.entity import PlayerState, Scored, apply_events
from shared.events import PlayerEvent, Rejected, parse
from shared.features import FEATURES, N_FEATURES, Features
from shared.journeys import DEFAULT_MIX, LABELS, STATE_TO_LABEL, Journey, generate
from shared.policy import ACTION_TYPES, Rules
from shared.signals import Signal

log = logging.getLogger("train_model")

MODEL_FILE = "player_intervention.onnx"
CARD_FILE = "model_card.json"
CARD_MD_FILE = "MODEL_CARD.md"
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
# One feature per action type, the obvious single-signal rule a human would write.
HEURISTICS: dict[str, tuple[str, float]] = {
    "break_suggestion": ("loss_streak", 1.0),
    "help_offer": ("lifetime_sessions", -1.0),
    "bonus_offer": ("last_session_vs_avg", -1.0),
}
# Features the trees must not split on: nothing in training gives them meaning
# (no actions are ever sent, so no time since the last one and no real responses),
# or their training range is an artefact of the simulated window (lifetime event
# counts are dominated by account age in production). They are blanked to a
# constant before fitting, so the exported model ignores them when serving.
EXCLUDED: tuple[str, ...] = ("minutes_since_last_action", "dismissed_ratio", "lifetime_events")
# Lifetime counters are clipped for fitting so that no split sits above a value
# every established production player exceeds (the window makes them small).
CLIPPED: dict[str, float] = {"lifetime_sessions": 10.0}
# The card's fields that say when and how fast a model was made, not what it is.
VOLATILE_CARD_FIELDS = ("model_version", "created", "train_seconds")
STAGES = 7
_T = TypeVar("_T")
_ZERO_SCORES: dict[str, float] = dict.fromkeys(ACTION_TYPES, 0.0)
_LABEL_INDEX = {label: i for i, label in enumerate(LABELS)}


@dataclass
class Dataset:
    """Trigger rows: features, label index into LABELS, and the journey each came from."""

    X: np.ndarray
    y: np.ndarray
    player: np.ndarray
    players: int
    events: int
    routed: int

    def class_balance(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(LABELS))
        return {label: int(n) for label, n in zip(LABELS, counts, strict=True)}


def journey_rows(journey: Journey, rules: Rules | None = None) -> tuple[list[list[float]], list[int], int]:
    """Run one journey through parse -> signal -> apply_events; rows and labels at triggers."""
    rules = rules or Rules()
    truth = {ev["id"]: state for ev, state in zip(journey.events, journey.truth, strict=True)}
    now_ms = max(journey.times_ms, default=0) + 1
    rows: list[list[float]] = []
    labels: list[int] = []
    current: list[str] = [""]

    def recording_scorer(features: Features) -> Scored:
        rows.append([getattr(features, name) for name in FEATURES])  # the card's order is FEATURES'
        labels.append(_LABEL_INDEX[STATE_TO_LABEL[truth[current[0]]]])
        return Scored(_ZERO_SCORES, [], [])

    state = PlayerState()
    routed = 0
    for event in journey.events:
        result = parse(msgspec.json.encode(event), now_ms=now_ms)
        if isinstance(result, Rejected):
            raise ValueError(
                f"generator produced an invalid event {event['id']}: {result.reason} {result.detail}"
            )
        if not isinstance(result, PlayerEvent):
            continue
        routed += 1
        signal = result.to_signal()
        current[0] = signal.id
        apply_events(
            state, journey.player_id, Signal([signal]), signal.t, recording_scorer, rules, "training"
        )
    return rows, labels, routed


def collect(
    journeys: Sequence[Journey],
    rules: Rules | None = None,
    progress: Callable[[Sequence[Journey]], Iterable[Journey]] = iter,
) -> Dataset:
    """The trigger rows of all journeys, as training or evaluation data."""
    xs: list[list[float]] = []
    ys: list[int] = []
    owners: list[int] = []
    routed = 0
    for p, journey in enumerate(progress(journeys)):
        rows, labels, n = journey_rows(journey, rules)
        xs.extend(rows)
        ys.extend(labels)
        owners.extend([p] * len(rows))
        routed += n
    return Dataset(
        X=np.asarray(xs, dtype=np.float32).reshape(-1, N_FEATURES),
        y=np.asarray(ys, dtype=np.int64),
        player=np.asarray(owners, dtype=np.int64),
        players=len(journeys),
        events=sum(len(j.events) for j in journeys),
        routed=routed,
    )


def fitting_view(X: np.ndarray) -> np.ndarray:
    """The matrix the trees are fitted on: EXCLUDED blanked, CLIPPED capped (see above)."""
    view = X.copy()
    for name in EXCLUDED:
        view[:, FEATURES.index(name)] = 0.0
    for name, cap in CLIPPED.items():
        i = FEATURES.index(name)
        view[:, i] = np.minimum(view[:, i], cap)
    return view


def fit(data: Dataset, seed: int, max_iter: int, max_leaf_nodes: int) -> HistGradientBoostingClassifier:
    """Gradient-boosted trees: fast on 2 cores, small once exported, no scaling needed."""
    clf = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=0.1,
        max_leaf_nodes=max_leaf_nodes,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
    clf.fit(fitting_view(data.X), data.y)
    return clf


@contextmanager
def _int_missing_tracks() -> Iterator[None]:
    """Work around skl2onnx 1.20 passing ``False`` (a bool) for leaves' missing-value flag.

    Its HistGradientBoosting converter gives leaf nodes
    ``nodes_missing_value_tracks_true=False``; onnx 1.23's protobuf refuses a bool
    in an ints attribute. Coercing to int during the conversion only is harmless:
    the flag means nothing on a leaf, and branch flags are already 0/1.
    """
    original = tree_ensemble.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def export_onnx(clf: HistGradientBoostingClassifier) -> bytes:
    """ONNX with one input ``features`` and one output ``probabilities`` (no label, no zipmap)."""
    with _int_missing_tracks():
        model = to_onnx(
            clf,
            initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
            options={id(clf): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    keep = [o for o in model.graph.output if o.name == OUTPUT_NAME]
    if len(keep) != 1:
        raise RuntimeError(f"expected a {OUTPUT_NAME!r} output, got {[o.name for o in model.graph.output]}")
    del model.graph.output[:]
    model.graph.output.extend(keep)
    _prune_dead_nodes(model.graph)
    model.producer_name = "scripts.train_model"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _prune_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes that only fed the removed label output (e.g. the ArgMax)."""
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))


def onnx_session(model_bytes: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def predict(session: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: X.astype(np.float32)})[0])


def heuristic_scores(X: np.ndarray, action: str) -> np.ndarray:
    feature, sign = HEURISTICS[action]
    return sign * X[:, FEATURES.index(feature)].astype(np.float64)


def auc_table(data: Dataset, proba: np.ndarray) -> dict[str, dict[str, float | str | int]]:
    """One-vs-rest holdout AUC per action type: model, constant prior, one-feature heuristic."""
    table: dict[str, dict[str, float | str | int]] = {}
    for action in ACTION_TYPES:
        k = LABELS.index(action)
        positive = (data.y == k).astype(int)
        table[action] = {
            "positives": int(positive.sum()),
            "model": round(float(roc_auc_score(positive, proba[:, k])), 4),
            "constant_prior": 0.5,
            "heuristic": round(float(roc_auc_score(positive, heuristic_scores(data.X, action))), 4),
            "heuristic_feature": ("-" if HEURISTICS[action][1] < 0 else "") + HEURISTICS[action][0],
        }
    return table


def threshold_table(data: Dataset, proba: np.ndarray, rules: Rules) -> dict[str, dict[str, float]]:
    """Precision/recall at the policy's min_score, so thresholds can be tuned with the card."""
    out: dict[str, dict[str, float]] = {}
    for action in ACTION_TYPES:
        k = LABELS.index(action)
        threshold = float(rules.min_score.get(action, 1.0))
        fired = proba[:, k] >= threshold
        positive = data.y == k
        hits = int((fired & positive).sum())
        out[action] = {
            "min_score": threshold,
            "fire_rate": round(float(fired.mean()), 4),
            "precision": round(hits / int(fired.sum()), 4) if fired.any() else 0.0,
            "recall": round(hits / int(positive.sum()), 4) if positive.any() else 0.0,
        }
    return out


def importances(clf: HistGradientBoostingClassifier, data: Dataset, seed: int) -> np.ndarray:
    """Permutation importance (log-loss increase) on unseen rows, clipped at 0 and normalised."""
    rng = np.random.default_rng(seed)
    take = rng.choice(len(data.y), size=min(len(data.y), 20_000), replace=False)
    result = permutation_importance(
        clf, data.X[take], data.y[take], scoring="neg_log_loss", n_repeats=3, random_state=seed, n_jobs=1
    )
    raw = np.clip(result.importances_mean, 0.0, None)
    total = float(raw.sum())
    return raw / total if total > 0 else np.full(N_FEATURES, 1.0 / N_FEATURES)


def feature_stats(train: Dataset, importance: np.ndarray) -> dict[str, dict[str, float]]:
    """Training mean/std (for z-scores) and global importance, per feature, for reasons."""
    X = train.X.astype(np.float64)
    mean, std = X.mean(axis=0), X.std(axis=0)
    return {
        name: {
            "mean": round(float(mean[i]), 6),
            "std": round(float(std[i]), 6),
            "importance": round(float(importance[i]), 6),
        }
        for i, name in enumerate(FEATURES)
    }


def _dataset_summary(name: str, seed: int, data: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": name,
        "seed": seed,
        "players": data.players,
        "events": data.events,
        "routed_events": data.routed,
        "triggers": int(len(data.y)),
        "class_balance": data.class_balance(),
        "window_start": args.start,
        "window_days": args.days,
    }


def render_markdown(card: Mapping[str, Any]) -> str:
    """The human-readable model card, generated from the JSON so the two never disagree."""
    lines = [
        f"# Model card: {card['model_version']}",
        "",
        f"Player-intervention classifier ({card['algorithm']['name']}), exported to ONNX "
        f"(`{card['onnx_file']}`, {card['onnx_bytes']:,} bytes, sha256 `{card['onnx_sha256'][:16]}…`).",
        f"Input `{card['input']['name']}` float32 [N, {len(card['features'])}]; "
        f"single output `{card['output']['name']}` float32 [N, {len(card['labels'])}] in label order "
        f"{', '.join(f'`{x}`' for x in card['labels'])}.",
        "",
        "Trained on synthetic journeys (`shared/journeys.py`) whose hidden state drives both the events "
        "and the labels: tilting → `break_suggestion`, confused newcomer → `help_offer`, disengaging → "
        "`bonus_offer`, fine → `none`. Rows are the entity's real triggers, computed by "
        "`shared.entity.apply_events`.",
        "",
        "## Data",
        "",
        "| set | seed | players | events | triggers | " + " | ".join(card["labels"]) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in card["labels"]) + " |",
    ]
    for ds in card["datasets"]:
        balance = " | ".join(str(ds["class_balance"][label]) for label in card["labels"])
        cells = [ds["name"], ds["seed"], ds["players"], ds["events"], ds["triggers"]]
        lines.append("| " + " | ".join(map(str, cells)) + f" | {balance} |")
    lines += [
        "",
        "## Holdout ROC AUC (one-vs-rest)",
        "",
        "| action | positives | model | constant prior | heuristic | heuristic feature |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for action, row in card["metrics"]["holdout_auc"].items():
        lines.append(
            f"| {action} | {row['positives']} | {row['model']:.4f} | {row['constant_prior']:.2f} | "
            f"{row['heuristic']:.4f} | `{row['heuristic_feature']}` |"
        )
    lines += [
        "",
        "## At the policy's default min_score (holdout)",
        "",
        "| action | min_score | fire rate | precision | recall |",
        "| --- | --- | --- | --- | --- |",
    ]
    for action, row in card["metrics"]["holdout_at_min_score"].items():
        rates = " | ".join(f"{row[k]:.4f}" for k in ("fire_rate", "precision", "recall"))
        lines.append(f"| {action} | {row['min_score']} | {rates} |")
    lines += [
        "",
        "## Features (input order), training mean/std and permutation importance",
        "",
        "| # | feature | mean | std | importance |",
        "| --- | --- | --- | --- | --- |",
    ]
    for i, name in enumerate(card["features"]):
        s = card["feature_stats"][name]
        lines.append(f"| {i} | `{name}` | {s['mean']:.4g} | {s['std']:.4g} | {s['importance']:.4f} |")
    lines += ["", "## Caveats", ""] + [f"- {c}" for c in card["caveats"]] + [""]
    lines += [f"Reproduce: `{card['command']}` (took {card['train_seconds']:.0f} s).", ""]
    return "\n".join(lines)


def _caveats(stats: Mapping[str, Mapping[str, float]]) -> list[str]:
    notes = [
        "Synthetic data only: the AUCs measure how well the model recovers the simulator's hidden state, "
        "not real-world harm or engagement. Retrain on labelled production outcomes before relying on it.",
        "Lifetime counters only cover the simulated window (production counts since the account "
        "opened), so `lifetime_events` is not used and `lifetime_sessions` is clipped at "
        f"{CLIPPED['lifetime_sessions']:g} for fitting: the model can tell a newcomer's first sessions "
        "apart but learns nothing above that.",
        "Training never sends actions, so `minutes_since_last_action` is constant and `dismissed_ratio` "
        "is simulator noise; both are blanked for fitting and ignored when serving. Retrain once real "
        "responses exist.",
        "`rounds_per_minute` is `rounds_last_30m / 30` in shared/features.py: a duplicate, so the trees "
        "use one of the two and permutation importance gives the other none.",
    ]
    unused = [name for name, s in stats.items() if s["importance"] == 0.0]
    if unused:
        notes.append("Zero permutation importance: " + ", ".join(f"`{n}`" for n in unused) + ".")
    return notes


class Stages:
    """Numbered stage lines with their durations, and progress over a stage's items.

    On a terminal the items get a tqdm bar; otherwise (a log, CI) a plain line at
    each quarter, so a log holds a few lines rather than hundreds of carriage returns.
    """

    def __init__(
        self,
        total: int,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
        tty: bool | None = None,
    ) -> None:
        self.total, self.out, self.clock = total, out or sys.stdout, clock
        self.tty = self.out.isatty() if tty is None else tty
        self.n = 0
        self._started: float | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self, what: str) -> None:
        self.end()
        self.n += 1
        self._started = self.clock()
        self.say(f"[{self.n}/{self.total}] {what}")

    def end(self) -> None:
        if self._started is not None:
            self.say(f"      done in {self.clock() - self._started:.1f} s")
            self._started = None

    def items(self, items: Sequence[_T], unit: str) -> Iterator[_T]:
        if self.tty:
            from tqdm import tqdm

            yield from tqdm(items, unit=unit, file=self.out, leave=False, dynamic_ncols=True)
            return
        n = len(items)
        marks = {max(1, (n * q) // 4) for q in (1, 2, 3, 4)} if n else set()
        for i, item in enumerate(items, 1):
            yield item
            if i in marks:
                self.say(f"      {i:,}/{n:,} {unit}")


def _last_train_seconds(out: Path) -> float | None:
    try:
        return float(json.loads((out / CARD_FILE).read_text(encoding="utf-8"))["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_outputs(out: Path, model_bytes: bytes, card: dict[str, Any]) -> str:
    """Write the model and its card, unless the model is the one already there.

    Returns ``"written"`` (a new or different model: ONNX, JSON card and Markdown card
    written), ``"unchanged"`` (the ONNX bytes equal the file's and the card says the
    same apart from VOLATILE_CARD_FIELDS: nothing written) or ``"card updated"`` (the same
    model bytes, a card that says something new: the card is rewritten with the existing
    version, date and training time, the model file is left alone).
    """
    out.mkdir(parents=True, exist_ok=True)
    model_path, card_path, md_path = out / MODEL_FILE, out / CARD_FILE, out / CARD_MD_FILE
    old_card: dict[str, Any] | None = None
    if model_path.exists() and model_path.read_bytes() == model_bytes and card_path.exists():
        try:
            old_card = json.loads(card_path.read_text(encoding="utf-8"))
        except ValueError:
            old_card = None
    if old_card is None or any(k not in old_card for k in VOLATILE_CARD_FIELDS):
        model_path.write_bytes(model_bytes)
        card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        md_path.write_text(render_markdown(card), encoding="utf-8")
        return "written"
    for key in VOLATILE_CARD_FIELDS:  # the same model keeps its version and date
        card[key] = old_card[key]
    card_text, md_text = json.dumps(card, indent=2) + "\n", render_markdown(card)
    changed = False
    if card_path.read_text(encoding="utf-8") != card_text:
        card_path.write_text(card_text, encoding="utf-8")
        changed = True
    if not md_path.exists() or md_path.read_text(encoding="utf-8") != md_text:
        md_path.write_text(md_text, encoding="utf-8")
        changed = True
    return "card updated" if changed else "unchanged"


def train(
    args: argparse.Namespace, command: str, stages: Stages | None = None
) -> tuple[dict[str, Any], str, float]:
    """Generate, collect, fit, export and evaluate; write the model and its card (``write_outputs``).

    Returns the card as written (an unchanged model keeps its version), what was written, and
    the seconds this training took."""
    stages = stages or Stages(STAGES)
    started = time.perf_counter()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    window = timedelta(days=args.days)

    def data_for(name: str, seed: int, players: int, offset: int) -> Dataset:
        stages.start(f"{name} rows: {players:,} synthetic journeys through the entity's own code")
        data = collect(
            generate(players, seed, start, window, player_offset=offset),
            progress=lambda js: stages.items(js, "journeys"),
        )
        stages.say(f"      {len(data.y):,} triggers from {data.events:,} events")
        return data

    train_data = data_for("training", args.train_seed, args.train_players, 0)
    extra: dict[str, Any] | None = None
    if getattr(args, "extra_rows", None):  # the daily summaries' retraining export (scripts/extra_rows.py)
        from scripts import extra_rows

        train_data, extra = extra_rows.extend(train_data, args.extra_rows)
        stages.say(f"      with the extra rows: {len(train_data.y):,} triggers")
    valid_data = data_for("validation", args.valid_seed, max(100, args.train_players // 4), 50_000)
    holdout_data = data_for("holdout", args.holdout_seed, args.holdout_players, 80_000)

    stages.start(
        f"fitting {args.max_iter} rounds of gradient-boosted trees on {len(train_data.y):,} rows "
        "(the longest stage, no progress inside it)"
    )
    clf = fit(train_data, args.train_seed, args.max_iter, args.max_leaf_nodes)
    stages.start("exporting to ONNX and checking it against scikit-learn on the holdout rows")
    model_bytes = export_onnx(clf)
    session = onnx_session(model_bytes)
    proba = predict(session, holdout_data.X)
    drift = float(np.abs(proba - clf.predict_proba(holdout_data.X)).max())
    if not np.allclose(clf.predict_proba(holdout_data.X), clf.predict_proba(fitting_view(holdout_data.X))):
        raise RuntimeError(
            "the model depends on an excluded or clipped range; raw serving inputs would differ"
        )
    stages.start("permutation importance on the validation rows (for the reasons given with actions)")
    stats = feature_stats(train_data, importances(clf, valid_data, args.valid_seed))
    stages.start("metrics and model card")
    digest = hashlib.sha256(model_bytes).hexdigest()
    version = f"pi-{datetime.now(UTC):%Y%m%d}-{digest[:8]}"
    card: dict[str, Any] = {
        "model_version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "onnx_file": MODEL_FILE,
        "onnx_sha256": digest,
        "onnx_bytes": len(model_bytes),
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, N_FEATURES]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None, len(LABELS)]},
        "features": list(FEATURES),
        "labels": list(LABELS),
        "action_types": list(ACTION_TYPES),
        "algorithm": {
            "name": "sklearn.ensemble.HistGradientBoostingClassifier",
            "max_iter": args.max_iter,
            "max_leaf_nodes": args.max_leaf_nodes,
            "learning_rate": 0.1,
            "min_samples_leaf": 40,
            "l2_regularization": 1.0,
        },
        "generator": {"module": "shared.journeys", "mix": DEFAULT_MIX},
        "datasets": [
            _dataset_summary("train", args.train_seed, train_data, args),
            _dataset_summary("valid", args.valid_seed, valid_data, args),
            _dataset_summary("holdout", args.holdout_seed, holdout_data, args),
        ],
        "metrics": {
            "holdout_auc": auc_table(holdout_data, proba),
            "holdout_at_min_score": threshold_table(holdout_data, proba, Rules()),
            "onnx_vs_sklearn_max_abs_diff": round(drift, 6),
        },
        "feature_stats": stats,
        **({"extra_training_rows": extra} if extra else {}),
        "excluded_features": list(EXCLUDED),
        "clipped_features": CLIPPED,
        "command": command,
    }
    card["caveats"] = _caveats(stats)
    took = card["train_seconds"] = round(time.perf_counter() - started, 1)
    outcome = write_outputs(Path(args.out_dir), model_bytes, card)
    stages.end()
    return card, outcome, took


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-seed", type=int, default=7)
    p.add_argument("--valid-seed", type=int, default=8)
    p.add_argument("--holdout-seed", type=int, default=1001)
    p.add_argument("--train-players", type=int, default=1000)
    p.add_argument("--holdout-players", type=int, default=400)
    p.add_argument("--days", type=float, default=4.0, help="length of the simulated window")
    p.add_argument("--start", default="2026-11-01T00:00:00", help="window start (UTC)")
    p.add_argument("--max-iter", type=int, default=150)
    p.add_argument("--max-leaf-nodes", type=int, default=15)
    p.add_argument(
        "--extra-rows",
        action="append",
        default=[],
        metavar="PATH_OR_BLOB_URL",
        help="add the daily summaries' retraining export to the training data (repeatable): a .jsonl file or "
        "directory, blob://<container>/<prefix> (AzureWebJobsStorage) or an https blob container URL",
    )
    p.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "shared" / "models"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    command = "python -m scripts.train_model " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out_dir" and v != []
    )
    out = Path(args.out_dir)
    last = _last_train_seconds(out)
    players = args.train_players + max(100, args.train_players // 4) + args.holdout_players
    stages = Stages(STAGES)
    stages.say(
        f"Training the player-intervention model into {out}: {players:,} synthetic players' journeys "
        f"through the entity's code, {args.max_iter} rounds of trees, ONNX export, in {STAGES} stages."
    )
    stages.say(
        "This takes minutes of CPU: "
        + (f"the last training took {last:.0f} s ({CARD_FILE}); " if last else "")
        + "expect over 6 minutes on a busy 2-core machine."
    )
    card, outcome, took = train(args, command, stages)
    version, size = card["model_version"], card["onnx_bytes"]
    if outcome == "unchanged":
        stages.say(
            f"Model unchanged: the ONNX bytes equal {out / MODEL_FILE} "
            f"(sha256 {card['onnx_sha256'][:16]}...); "
            f"model and card left as they were ({version}), {took:.0f} s."
        )
    elif outcome == "card updated":
        stages.say(
            f"Same model bytes, a card that says something new: rewrote {CARD_FILE} and {CARD_MD_FILE}, "
            f"keeping version {version}; {MODEL_FILE} left as it was; {took:.0f} s."
        )
    else:
        stages.say(f"Wrote {version} ({size:,} bytes) and its card to {out} in {took:.0f} s.")
    for action, row in card["metrics"]["holdout_auc"].items():
        auc = f"model {row['model']:.4f}  heuristic {row['heuristic']:.4f}  prior 0.5"
        stages.say(f"  holdout AUC {action:<17} {auc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
