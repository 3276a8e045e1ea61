"""What-if replay: recorded events through the current configuration and a candidate, compared.

``python -m devhost whatif`` reads recorded events and runs them twice through the REAL entity code
(``shared.player.run_operation`` over ``shared.entity.apply``: the same function the Player entity
runs, with the same router, ``shared.routing.route``, in front of it): once with the baseline (the
current settings: ``shared.runtime.rules()`` and the committed model) and once with a candidate (a
model file, rule overrides by name, a holdout table). Nothing about a decision is reimplemented
here; only the Cosmos container is replaced by an in-memory one that keeps the documents each side
would have written, with the same create-once, replace and conditional-update rules.

Sources, in the order the pipeline delivered them:

- a JSON-lines file of CloudEvents (``--events``): file order, which is the order the devhost's
  JSONL source appends them (one player's events stay in one partition, in file order); each gets
  the partition, sequence number and enqueued time that source would give it, the enqueued time
  being the event time plus a fixed lag (``--lag-ms``);
- the devhost's own Event Hubs log (``--state-dir``: the run's ``devhost.sqlite``), per partition in
  sequence order, partitions merged by enqueued time; batches the host gave up on are left out
  (they never reached an entity);
- a day of the retraining export (``--export``: ``summary-exports/{day}/hour-HH.jsonl`` files): rows
  of sent actions only (features, action, outcome) with no player, no time and no state, so no
  entity can be replayed; each row is scored by both models and decided by the real policy
  (``shared.policy.decide``) in a neutral context (no cooldown, cap, warm-up, opt-out or staleness),
  so only the model, ``min_score``, ``kill_switch``, ``harm_guard`` and the ranking can change a
  row's action there.

The clock is deterministic: each operation runs at ``now`` = the event's enqueued time (the log's,
or the event time plus the lag), so the staleness rule, outcome watches and decision times depend
on the recording only, never on when the replay runs.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import entity as st
from shared.config import ConfigError, parse_holdout_salt
from shared.policy import ACTION_TYPES, RULES, Rules

SCHEMA = "pi-whatif/1"
DEFAULT_LAG_MS = 1_000
DEFAULT_PARTITIONS = 32  # the devhost's default (python -m devhost run --partitions)
HIST_BINS = 20
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
SAMPLES = 10  # changed decisions listed in the report, per direction
DECISION_STATUSES = ("pending", "holdout")


class WhatIfError(ValueError):
    """Input or options the replay cannot use; the message says which and where (line numbers)."""


# -- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded message, where the pipeline read it, and the replay's clock for it."""

    body: bytes
    partition: str | None
    sequence: int | None
    enqueued_ms: int | None
    now_ms: int
    line: int | None = None  # in a JSONL file


def read_jsonl(
    path: Path, lag_ms: int = DEFAULT_LAG_MS, partitions: int = DEFAULT_PARTITIONS
) -> list[Recorded]:
    """A CloudEvents JSON-lines file as the devhost's JSONL source would append it."""
    from devhost.eventhubs.local_hub import partition_for
    from devhost.eventhubs.producers import _subject

    if not path.is_file():
        raise WhatIfError(f"--events {path}: no such file")
    out: list[Recorded] = []
    seqs: Counter[str] = Counter()
    last_now = 0
    for n, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line.strip():
            continue
        if n == 1 and b'"pi-retraining-rows/' in line[:200]:
            raise WhatIfError(f"--events {path}: line 1 is a retraining export header; use --export for it")
        key = _subject(line)
        part = partition_for(key if key is not None else line.hex(), partitions)
        t = _event_time_ms(line)
        now = t + lag_ms if t is not None else last_now
        last_now = max(last_now, now)
        out.append(Recorded(line, part, seqs[part], now, now, n))
        seqs[part] += 1
    if not out:
        raise WhatIfError(f"--events {path}: no events (the file is empty)")
    return out


def _event_time_ms(line: bytes) -> int | None:
    from datetime import datetime

    try:
        value = json.loads(line).get("time")
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
    return int(when.timestamp() * 1000) if when.tzinfo is not None else None


def recorded_settings(state_dir: Path) -> dict[str, str]:
    """The decision settings the devhost run in ``state_dir`` used (devhost.host DECISION_SETTINGS:
    holdout, challenger, cap, kill switch, staleness), or {} for a run from before they were kept."""
    path = state_dir / "devhost.sqlite"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT v FROM meta WHERE k = 'decision_settings'").fetchone()
        finally:
            conn.close()
        value = json.loads(row[0]) if row else {}
    except (sqlite3.Error, ValueError) as exc:
        raise WhatIfError(f"--state-dir {state_dir}: cannot read the run's settings: {exc}") from exc
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def read_devhost_log(state_dir: Path) -> tuple[list[Recorded], dict[str, Any]]:
    """The devhost's partition log (read only): per partition in sequence order, merged by
    enqueued time; events of batches the host gave up on are left out."""
    from shared import parking

    path = state_dir / "devhost.sqlite"
    if not path.is_file():
        raise WhatIfError(f"--state-dir {state_dir}: no devhost run there (no devhost.sqlite)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = conn.execute(
            "SELECT partition, seq, enqueued_ms, body, props FROM events ORDER BY partition, seq"
        ).fetchall()
        failed = conn.execute("SELECT partition, first_seq, last_seq FROM failed_batches").fetchall()
        conn.close()
    except sqlite3.Error as exc:
        raise WhatIfError(f"--state-dir {state_dir}: cannot read its log: {exc}") from exc
    gave_up = {(p, s) for p, lo, hi in failed for s in range(lo, hi + 1)}
    per: dict[str, list[Recorded]] = {}
    skipped = 0
    for part, seq, enq, body, props in rows:
        if (part, seq) in gave_up:
            skipped += 1
            continue
        try:
            first = parking.origin(json.loads(props) if props else None)
        except (ValueError, TypeError) as exc:
            raise WhatIfError(
                f"--state-dir {state_dir}: the log's properties of partition {part} sequence {seq} "
                f"are not readable: {exc}"
            ) from exc
        if first is not None:  # a re-injected parked event: deduped by where it was first read
            part_, seq_, enq_ = first[0], first[1], first[2] if first[2] is not None else enq
            per.setdefault(part, []).append(Recorded(bytes(body), part_, seq_, enq_, enq))
        else:
            per.setdefault(part, []).append(Recorded(bytes(body), part, seq, enq, enq))
    if not per:
        raise WhatIfError(f"--state-dir {state_dir}: its log holds no events")
    merged = list(heapq.merge(*per.values(), key=lambda r: r.now_ms))
    return merged, {"partitions": len(per), "failedBatchEventsLeftOut": skipped}


def read_export(path: Path) -> tuple[list[str], list[tuple[str, int, dict[str, Any]]]]:
    """Rows of a day of the retraining export: a file or a folder of ``hour-HH.jsonl`` files.
    Returns the feature names (every file must name the same) and (file, line, row)."""
    files = sorted(path.glob("hour-*.jsonl")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise WhatIfError(f"--export {path}: no such file, or no hour-HH.jsonl files in that folder")
    features: list[str] | None = None
    rows: list[tuple[str, int, dict[str, Any]]] = []
    for f in files:
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
        for n, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise WhatIfError(f"{f}: line {n}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise WhatIfError(f"{f}: line {n}: not a JSON object")
            if n == 1 or "schema" in obj:
                if not str(obj.get("schema", "")).startswith("pi-retraining-rows/"):
                    raise WhatIfError(
                        f"{f}: line {n}: not a retraining export header (no schema pi-retraining-rows/…)"
                    )
                names = obj.get("features")
                if not isinstance(names, list) or (features is not None and names != features):
                    raise WhatIfError(f"{f}: line {n}: the header's features differ from the other files'")
                features = [str(x) for x in names]
                continue
            vec = obj.get("features")
            if (
                obj.get("action") not in ACTION_TYPES
                or not isinstance(vec, list)
                or len(vec) != len(features or [])
            ):
                raise WhatIfError(
                    f"{f}: line {n}: a row needs an action type and {len(features or [])} features"
                )
            if not all(isinstance(v, int | float) and math.isfinite(v) for v in vec):
                raise WhatIfError(f"{f}: line {n}: features must be finite numbers")
            rows.append((str(f), n, obj))
    return features or [], rows


# -- the two sides ---------------------------------------------------------------------------------


class MemoryStore:
    """The ``actions`` container of one side, in memory, with ActionStore's write semantics:
    decisions are created once, aggregates replaced whole, a response or an outcome recorded once."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def write_outbox(self, player_id: str, writes: list[Any]) -> Any:
        from shared.store import WriteReport

        report = WriteReport()
        for w in writes:
            if w.op == "upsert" or w.doc["id"] not in self.docs:
                self.docs[w.doc["id"]] = dict(w.doc)
            report.written.add(w.doc["id"])
        return report

    def record_outcome(self, player_id: str, outcome: st.OutcomeRecord) -> str:
        from shared.store import NOT_SENT, RESPONSES
        from shared.timeutil import iso_ms, parse_iso_ms

        doc = self.docs.get(outcome.action_id)
        if doc is None or doc.get("playerId") != player_id or doc.get("status") in NOT_SENT:
            return "unknown"
        if doc.get("status") in RESPONSES:
            return "already"
        doc["status"], doc["respondedAt"] = outcome.response, iso_ms(outcome.t)
        doc["responseLatencyMs"] = max(0, outcome.t - parse_iso_ms(doc["eventTime"]))
        return "recorded"

    def record_outcome_met(self, player_id: str, met: st.OutcomeMet) -> str:
        from shared.timeutil import iso_ms

        doc = self.docs.get(met.action_id)
        if doc is None or doc.get("playerId") != player_id or not isinstance(doc.get("outcome"), dict):
            return "unknown"
        if doc["outcome"].get("metAt"):
            return "already"
        doc["outcome"] = {**doc["outcome"], "metAt": iso_ms(met.t), "eventId": met.event_id}
        return "recorded"

    def delete_player_data(self, player_id: str) -> int:  # erasure never comes from the log
        return 0

    def record_erasure(self, player_id: str, erased_ms: int) -> None:
        return None

    def delete_player_deadletters(self, player_id: str) -> int:
        return 0


@dataclass
class Config:
    """One side's configuration: the policy's rules and the model (a scorer with its version)."""

    rules: Rules
    model: Any  # shared.model.InterventionModel
    challenger: st.Challenger | None = None

    @property
    def version(self) -> str:
        return str(self.model.version)


@dataclass
class Side:
    config: Config
    store: MemoryStore = field(default_factory=MemoryStore)
    # player -> its state, kept decoded between operations as the entity's StateCache keeps it
    states: dict[str, st.PlayerState] = field(default_factory=dict)
    # (player, trigger event id) -> every record decided there (action, holdout, suppressed)
    decided: dict[tuple[str, str], list[st.ActionRecord]] = field(default_factory=dict)
    rejections: Counter[str] = field(default_factory=Counter)
    scores: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in ACTION_TYPES})
    triggers: int = 0
    accepted: int = 0
    duplicates: int = 0

    def scorer(self, features: Any) -> Any:
        scored = self.config.model.score(features)
        for t in ACTION_TYPES:
            self.scores[t].append(float(scored.scores.get(t, 0.0)))
        return scored

    def run(self, player_id: str, signal: Any, now_ms: int) -> None:
        from shared.player import run_operation

        state = self.states.get(player_id) or st.PlayerState()
        outcome = run_operation(
            player_id,
            "events",
            state,
            signal,
            now_ms=now_ms,
            scorer=self.scorer,
            model_version=self.config.version,
            rules=self.config.rules,
            store=self.store,
            reminders=None,
            challenger=self.config.challenger,
        )
        if outcome.state is not None:
            self.states[player_id] = outcome.state
        fx = outcome.effects
        self.triggers += fx.triggers
        self.accepted += fx.accepted
        self.duplicates += fx.duplicates
        self.rejections.update(fx.rejections)
        for rec in (*fx.actions, *fx.holdouts, *fx.suppressed):
            self.decided.setdefault((player_id, rec.trigger), []).append(rec)

    def decisions(self) -> dict[str, dict[str, Any]]:
        """The decision documents (sent or held out), by id."""
        return {i: d for i, d in self.store.docs.items() if d.get("status") not in ("suppressed", "shadow")}


def replay(recorded: Iterable[Recorded], sides: Sequence[Side]) -> dict[str, Any]:
    """Route each message as ingest does (at its ``now``) and run each player's signal through every
    side's entity; returns the routing counts."""
    from shared.routing import Message, route
    from shared.signals import Signal

    counts: Counter[str] = Counter()
    dead: list[dict[str, Any]] = []
    players: set[str] = set()
    for r in recorded:
        batch = route([Message(r.body, r.partition, r.sequence, r.enqueued_ms)], now_ms=r.now_ms)
        counts["messages"] += 1
        counts["dropped"] += sum(batch.dropped.values())
        for dl in batch.dead_letters:
            counts["deadLettered"] += 1
            if len(dead) < 20:
                where = (
                    {"line": r.line}
                    if r.line is not None
                    else {"partition": r.partition, "sequence": r.sequence}
                )
                dead.append({**where, "reason": dl.rejected.reason, "detail": dl.rejected.detail[:160]})
        ranges = batch.ranges()
        for pid, events in batch.signals.items():
            counts["routed"] += len(events)
            players.add(pid)
            for side in sides:
                side.run(pid, Signal(events, ranges), r.now_ms)
    return {**counts, "players": len(players), "deadLetters": dead}


# -- configuration ---------------------------------------------------------------------------------


def baseline_rules(settings: Mapping[str, str] | None) -> tuple[Rules, str | None]:
    """The app's own rules (``shared.runtime.rules()``) under these settings, and CHALLENGER_MODEL."""
    import os

    from devhost.functions_host.settings import applied
    from shared import config, runtime

    env = dict(settings or {})
    if not env.get("COSMOS_ENDPOINT"):  # the replay reads no Cosmos: any valid local endpoint will do
        env.update(COSMOS_ENDPOINT="http://127.0.0.1:8081/", COSMOS_KEY="whatif-reads-no-cosmos")
    for name in ("ERASURE_HASH_KEY", "TELEMETRY_HASH_KEY"):  # no player id is hashed here: no warning
        env[name] = env.get(name) or os.environ.get(name) or "whatif-hashes-nothing"
    with applied(env):  # the devhost's own helper: os.environ for the duration, then restored
        runtime.reset()
        try:
            return runtime.rules(), runtime.settings().challenger_model
        except config.ConfigError as exc:
            raise WhatIfError(f"settings: {exc}") from exc
        finally:
            runtime.reset()


def _number(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise WhatIfError(f"--rule {name}: not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise WhatIfError(f"--rule {name}: not a finite number: {raw!r}")
    return value


def _types(raw: str, name: str) -> frozenset[str]:
    names = frozenset(t.strip() for t in raw.split(",") if t.strip())
    unknown = sorted(names - set(ACTION_TYPES))
    if unknown:
        raise WhatIfError(f"--rule {name}: unknown action types {unknown}; known: {', '.join(ACTION_TYPES)}")
    return names


def apply_overrides(base: Rules, specs: Sequence[str]) -> tuple[Rules, list[str]]:
    """``--rule NAME=VALUE`` overrides by the field names of ``shared.policy.Rules``: a table field by
    type (``min_score.break_suggestion=0.6``) or for every type (``min_score=0.6``); ``disabled`` is a
    comma list of types (``disabled=`` for none). Returns the rules and the overrides as applied."""
    fields = {f.name: f for f in dataclasses.fields(Rules)}
    changes: dict[str, Any] = {}
    applied: list[str] = []
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name:
            raise WhatIfError(f"--rule {spec!r}: expected NAME=VALUE (e.g. min_score.break_suggestion=0.6)")
        top, _, atype = name.partition(".")
        if top not in fields or top == "holdout_key" and atype:
            raise WhatIfError(f"--rule {name}: unknown rule; known: {', '.join(fields)}")
        current = changes.get(top, getattr(base, top))
        if isinstance(current, Mapping):
            if atype and atype not in ACTION_TYPES:
                raise WhatIfError(
                    f"--rule {name}: unknown action type {atype!r}; known: {', '.join(ACTION_TYPES)}"
                )
            value = _number(raw, name)
            if top in ("min_score", "holdout_share") and not 0.0 <= value <= 1.0:
                raise WhatIfError(f"--rule {name}: must be between 0 and 1, got {raw}")
            if value < 0:
                raise WhatIfError(f"--rule {name}: must be 0 or more, got {raw}")
            cast = int if top.endswith("_ms") else float
            table = dict(current)
            for t in [atype] if atype else ACTION_TYPES:
                table[t] = cast(value)
            changes[top] = table
        elif atype:
            raise WhatIfError(f"--rule {name}: {top} is not set per action type")
        elif isinstance(current, frozenset):
            changes[top] = _types(raw, name)
        elif isinstance(current, str):
            if not raw:
                raise WhatIfError(f"--rule {name}: must not be empty")
            if top == "holdout_key":  # the app's own check (BLAKE2b keys are at most 64 bytes)
                try:
                    raw = parse_holdout_salt(raw)
                except ConfigError as exc:
                    raise WhatIfError(f"--rule {name}: {exc}") from exc
                changes[top] = raw
                applied.append(f"{name}=(redacted)")  # a key is not written into the report
                continue
            changes[top] = raw
        else:
            value = _number(raw, name)
            if value < 0:
                raise WhatIfError(f"--rule {name}: must be 0 or more, got {raw}")
            if fields[top].type == "int" and value != int(value):
                raise WhatIfError(f"--rule {name}: must be a whole number, got {raw}")
            changes[top] = int(value) if fields[top].type == "int" else value
        applied.append(f"{name}={raw}")
    return dataclasses.replace(base, **changes), applied


def rules_json(rules: Rules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Rules):
        v = getattr(rules, f.name)
        out[f.name] = sorted(v) if isinstance(v, frozenset) else dict(v) if isinstance(v, Mapping) else v
    out.pop("holdout_key", None)  # a key: never written into a report
    return out


# -- comparison ------------------------------------------------------------------------------------


def _why_not(side: Side, player: str, trigger: str, atype: str) -> str:
    """Why ``side`` made no ``atype`` decision at this trigger: the rule that stopped it, another type
    ranked first (``ranking``), or its score under ``min_score`` (nothing was a candidate)."""
    recs = side.decided.get((player, trigger), [])
    for rec in recs:
        if rec.type == atype and rec.status == "suppressed":
            return rec.rejected_by or "other"
    if any(rec.status != "suppressed" for rec in recs):
        return "ranking"
    return "min_score"


def _moved(docs: Mapping[str, Mapping[str, Any]], ids: Iterable[str], why: Any) -> dict[str, Any]:
    by: dict[str, dict[str, Any]] = {
        t: {"total": 0, "sent": 0, "holdout": 0, "byRule": {}} for t in ACTION_TYPES
    }
    for i in ids:
        d = docs[i]
        row = by[d["type"]]
        rule = why(d)
        row["total"] += 1
        row["sent" if d["status"] != "holdout" else "holdout"] += 1
        row["byRule"][rule] = row["byRule"].get(rule, 0) + 1
    return by


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {f"p{int(q * 100)}": None for q in QUANTILES}
    xs = sorted(values)
    out: dict[str, float | None] = {}
    for q in QUANTILES:  # linear interpolation between closest ranks (numpy's default)
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        out[f"p{int(q * 100)}"] = round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 6)
    return out


def histogram(values: Sequence[float]) -> list[int]:
    bins = [0] * HIST_BINS
    for v in values:
        bins[min(HIST_BINS - 1, max(0, int(v * HIST_BINS)))] += 1
    return bins


def _dist(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 6) if values else None,
        "quantiles": quantiles(values),
        "histogram": histogram(values),
    }


def score_shift(base: Mapping[str, Sequence[float]], cand: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in ACTION_TYPES:
        b, c = _dist(base[t]), _dist(cand[t])
        shift = {
            k: (
                round(c["quantiles"][k] - b["quantiles"][k], 6)
                if b["quantiles"][k] is not None and c["quantiles"][k] is not None
                else None
            )
            for k in b["quantiles"]
        }
        mean = round(c["mean"] - b["mean"], 6) if b["mean"] is not None and c["mean"] is not None else None
        out[t] = {"baseline": b, "candidate": c, "shift": {"mean": mean, **shift}}
    return out


def _totals(side: Side) -> dict[str, Any]:
    docs = side.store.docs.values()
    sent = Counter(d["type"] for d in docs if d.get("status") in ("pending", "accepted", "dismissed"))
    held = Counter(d["type"] for d in docs if d.get("status") == "holdout")
    supp: dict[str, dict[str, int]] = {t: {} for t in ACTION_TYPES}
    for d in docs:
        if d.get("status") == "suppressed":
            row = supp[d["type"]]
            row[d["rejectedBy"]] = row.get(d["rejectedBy"], 0) + int(d.get("count", 1))
    return {
        "modelVersion": side.config.version,
        "triggers": side.triggers,
        "sent": {t: sent[t] for t in ACTION_TYPES},
        "holdout": {t: held[t] for t in ACTION_TYPES},
        "suppressed": supp,
        "rejections": {r: side.rejections[r] for r in sorted(side.rejections)},
    }


def compare(base: Side, cand: Side) -> dict[str, Any]:
    """Decisions added, removed and changed (sent <-> holdout), by type and by the rule behind each."""
    b, c = base.decisions(), cand.decisions()
    added = sorted(set(c) - set(b))
    removed = sorted(set(b) - set(c))
    changed = sorted(i for i in set(b) & set(c) if b[i]["status"] != c[i]["status"])
    rules = sorted(set(base.rejections) | set(cand.rejections) | set(RULES))
    rejections = {
        r: {
            "baseline": base.rejections[r],
            "candidate": cand.rejections[r],
            "change": cand.rejections[r] - base.rejections[r],
        }
        for r in rules
        if base.rejections[r] or cand.rejections[r]
    }

    def sample(docs: Mapping[str, Mapping[str, Any]], ids: list[str], why: Any) -> list[dict[str, Any]]:
        return [
            {"id": i, "playerId": docs[i]["playerId"], "type": docs[i]["type"], "status": docs[i]["status"],
             "score": docs[i]["score"], "eventTime": docs[i]["eventTime"], "rule": why(docs[i])}
            for i in ids[:SAMPLES]
        ]  # fmt: skip

    def removed_why(d: Mapping[str, Any]) -> str:  # the rule that now stops it
        return _why_not(cand, d["playerId"], d["triggerEventId"], d["type"])

    def added_why(d: Mapping[str, Any]) -> str:  # the rule that no longer stops it
        return _why_not(base, d["playerId"], d["triggerEventId"], d["type"])

    return {
        "baseline": _totals(base),
        "candidate": _totals(cand),
        "added": _moved(c, added, added_why),
        "removed": _moved(b, removed, removed_why),
        "statusChanged": {
            t: {
                "toHoldout": sum(1 for i in changed if b[i]["type"] == t and c[i]["status"] == "holdout"),
                "toSent": sum(1 for i in changed if b[i]["type"] == t and b[i]["status"] == "holdout"),
            }
            for t in ACTION_TYPES
        },
        "unchanged": len(set(b) & set(c)) - len(changed),
        "rejections": rejections,
        "scores": score_shift(base.scores, cand.scores),
        "samples": {"added": sample(c, added, added_why), "removed": sample(b, removed, removed_why)},
    }


def run(
    *,
    events: Path | None = None,
    state_dir: Path | None = None,
    export: Path | None = None,
    settings: Mapping[str, str] | None = None,
    model: Path | None = None,
    rules: Sequence[str] = (),
    holdout: str | None = None,
    lag_ms: int = DEFAULT_LAG_MS,
    summary_json: Path | None = None,
    summary_day: str | None = None,
    settings_explicit: bool = False,
) -> dict[str, Any]:
    """The whole replay; returns the report (not yet written). A devhost run's own decision
    settings (recorded in its state) are the baseline's, over ``settings``, unless those were named
    explicitly (``settings_explicit``: ``--settings``)."""
    from devhost.whatif_report import estimated_effect, load_summary_file, replay_export, summary_from_cosmos
    from shared.config import parse_holdout_share
    from shared.model import ModelError, get_challenger, get_model

    if state_dir is not None and not settings_explicit and (state_dir / "devhost.sqlite").is_file():
        settings = {**(settings or {}), **recorded_settings(state_dir)}
    base_rules, challenger_path = baseline_rules(settings)
    cand_rules, overrides = apply_overrides(base_rules, rules)
    if holdout is not None:
        try:
            cand_rules = dataclasses.replace(cand_rules, holdout_share=parse_holdout_share(holdout))
        except ConfigError as exc:
            raise WhatIfError(
                f"--holdout: {str(exc).replace('setting HOLDOUT_SHARE', 'the table')}"
            ) from None
        overrides.append(f"holdout={holdout}")
    try:
        champion = get_model()
        candidate = get_model(model) if model is not None else champion
        challenger = get_challenger(challenger_path)
    except (ModelError, OSError, ValueError, KeyError) as exc:
        raise WhatIfError(f"--model {model}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # onnxruntime's own errors (not an ONNX file, an invalid graph)
        raise WhatIfError(f"--model {model}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    base, cand = Config(base_rules, champion, challenger), Config(cand_rules, candidate, challenger)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "baseline": {"modelVersion": base.version, "rules": rules_json(base_rules)},
        "candidate": {"modelVersion": cand.version, "model": str(model) if model else None,
                      "rules": rules_json(cand_rules), "overrides": overrides},
    }  # fmt: skip
    if export is not None:
        features, rows = read_export(export)
        if not rows:
            raise WhatIfError(f"--export {export}: no rows")
        ex = replay_export(features, rows, base, cand)
        report["source"] = {"kind": "export", "path": str(export), "rows": len(rows)}
        report["clock"] = "none: export rows carry no time; each row decided alone in a neutral context"
        report["export"] = ex
        report["scores"] = ex.pop("scores")
        report["effect"] = {
            "available": False,
            "reason": "export rows are sent actions only: no holdout comparison",
        }
        report["notes"] = [
            "rows are sent actions only: moments the baseline suppressed or did not act on are not in "
            "the export, so a candidate can only keep, change or drop actions, never add one",
            "stateful rules (cooldown, daily_cap, warm_up, opt_out, stale) and the holdout cannot be "
            "applied: the rows carry no player, time or history",
        ]
        return report
    if events is not None:
        recorded, extra = read_jsonl(events, lag_ms), {"kind": "jsonl", "path": str(events)}
        report["clock"] = f"now = event time + {lag_ms} ms (the file has no enqueued times)"
    elif state_dir is not None:
        recorded, info = read_devhost_log(state_dir)
        extra = {"kind": "devhost-log", "path": str(state_dir), **info}
        report["clock"] = "now = each event's enqueued time in the log"
    else:
        raise WhatIfError("name what to replay: --events FILE, --state-dir DIR or --export PATH")
    sides = [Side(base), Side(cand)]
    counts = replay(recorded, sides)
    if not counts.get("routed"):
        first = "; ".join(
            f"line {d['line']}: {d['reason']}" if "line" in d else f"{d['reason']}"
            for d in counts["deadLetters"][:3]
        )
        where = extra["path"]
        raise WhatIfError(
            f"{where}: no valid event to replay ({counts.get('deadLettered', 0)} dead-lettered, "
            f"{counts.get('dropped', 0)} of unused types){': ' + first if first else ''}"
        )
    comparison = compare(*sides)
    report["source"] = {**extra, **counts}
    report["totals"] = {"baseline": comparison.pop("baseline"), "candidate": comparison.pop("candidate")}
    report.update(comparison)
    if summary_day is not None:
        index, source = summary_from_cosmos(summary_day, settings), f"summaries container, {summary_day}"
    elif summary_json is not None:
        index, source = load_summary_file(summary_json), str(summary_json)
    else:
        index, source = None, None
    report["effect"] = estimated_effect(report["totals"], index, source)
    report["notes"] = [
        "decisions are documents as the entity writes them (ids from player, trigger event and "
        "type); a decision only one side made is added or removed, with the rule that stops it on the "
        "other side ('ranking': another type came first; 'min_score': no type reached its threshold)",
        "later decisions follow from earlier ones (cooldown, daily cap): the rule named is the one at "
        "that trigger",
    ]
    return report


def changed(report: Mapping[str, Any]) -> bool:
    """Did the candidate add, remove or change any decision (or, for an export, any row's action)?"""
    if "export" in report:
        return any(e["kept"] != e["rows"] for e in report["export"]["types"].values())
    moved = (report["added"][t]["total"] + report["removed"][t]["total"] for t in ACTION_TYPES)
    flips = (sum(v.values()) for v in report["statusChanged"].values())
    return any(moved) or any(flips)
