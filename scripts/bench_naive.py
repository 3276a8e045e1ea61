"""The naive design the benchmark compares against (scripts/bench.py, docs/performance.md).

What a first, straightforward implementation on the same platform would do, with the same
Durable SDK and the same feature, model and policy code as the engine:

- ingest: ``json.loads`` each body, drop types the model does not use, and send **one signal per
  event** (no grouping by player);
- entity: the state is a **JSON list of dicts** (the buffered events, newest last, and the actions
  sent), read and written through the SDK's default JSON (``get_state`` / ``set_state``); each
  operation dedupes by scanning the list, inserts the event, sorts, trims to the engine's buffer
  bounds, and on a trigger recomputes the features from the list with the project's own
  ``shared.features``, scores them with ``shared.model`` and asks ``shared.policy``; an action is
  written through the same ``ActionStore``.

It triggers on the same rule as the engine (the always-triggering types, a second session's
start, the tenth round since it last scored and each fifth loss in a row), so both designs
score about as often and the comparison is the design, not the amount of scoring.

ADAPTER: ``_Domain`` below is the one place that knows the domain's feature, model and policy
API; when that API changes, only it needs to follow.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, List  # noqa: UP035 - the worker refuses list[...] on Python 3.11 (docs/platform.md)

import azure.durable_functions as df
import azure.functions as func

ENTITY = "NaivePlayer"
MAX_EVENTS = 96
MAX_AGE_MS = 6 * 3600 * 1000
ALWAYS = frozenset({"session.ended", "deposit.made", "deposit.failed", "withdrawal.reversed"})

app = df.DFApp()


@dataclass
class Stats:
    scored: int = 0
    actions: int = 0


stats = Stats()


# -- ADAPTER: the domain's feature / model / policy API ------------------------------------------
@dataclass
class _Aggregates:
    """``shared.features.AggregatesLike``, computed from the list (the naive state keeps no counters)."""

    sessions: int = 0
    events: int = 0
    session_minutes_sum: float = 0.0
    session_count_closed: int = 0
    accepted: int = 0
    dismissed: int = 0
    last_end_ms: int = 0
    prev_end_ms: int = 0
    session_open_ms: int = 0


class _Domain:
    """Lazily bound to the engine's modules; ``decide`` is the only call the naive entity makes."""

    def __init__(self) -> None:
        self.features_module = importlib.import_module("shared.features")
        self.policy = importlib.import_module("shared.policy")
        self.model = importlib.import_module("shared.model").get_model()
        self.rules = self.policy.Rules()
        try:  # entity core v2: named entries (a struct), one table of event types
            entry = importlib.import_module("shared.entity.model").Entry
            fields = entry.__struct_fields__
            self.entry = lambda **values: entry(**{f: values.get(f, 0) for f in fields})
            types = importlib.import_module("shared.eventtypes")
            self.codes = {name: int(spec.code) for name, spec in types.BY_NAME.items()}
        except ModuleNotFoundError:  # v1: positional lists [t, code, a, b, id, partition, sequence]
            self.entry = lambda **v: [v["t"], v["kind"], v["a"], v["b"], v["id"], v["p"], v["s"]]
            self.codes = dict(importlib.import_module("shared.state").TYPE_CODES)

    def _entry(self, ev: dict[str, Any]) -> Any:
        d, etype = ev.get("data") or {}, ev["type"]
        a = b = 0.0
        if etype == "round.completed":
            a, b = float(d.get("stake", 0.0)), float(d.get("payout", 0.0))
        elif "amount" in d and etype != "bonus.claimed":
            a = float(d["amount"])
        elif etype == "action.responded":
            a = 1.0 if d.get("response") == "accepted" else 0.0
        # Fields features never read (the id, its hash, the position) are filled, not computed.
        return self.entry(
            t=ev["t"], kind=self.codes[etype], a=a, b=b, id=ev["id"], p=ev.get("p"), s=ev.get("s")
        )

    def features(self, events: list[dict[str, Any]], actions: list[dict[str, Any]], t: int) -> Any:
        """The domain's features as of ``t``, recomputed from the list."""
        buf = [self._entry(e) for e in events]
        agg = _Aggregates()
        open_ms = 0
        for e in events:
            agg.events += 1
            if e["type"] == "session.started":
                agg.sessions += 1
                agg.session_open_ms = open_ms = e["t"]
            elif e["type"] == "session.ended":
                agg.prev_end_ms, agg.last_end_ms = agg.last_end_ms, e["t"]
                if open_ms:
                    agg.session_minutes_sum += (e["t"] - open_ms) / 60000.0
                    agg.session_count_closed += 1
            elif e["type"] == "action.responded":
                if (e.get("data") or {}).get("response") == "accepted":
                    agg.accepted += 1
                else:
                    agg.dismissed += 1
        last_action = {a["action"]: a["t"] for a in actions}
        return self.features_module.compute(buf, agg, last_action, t)

    def score(self, feats: Any) -> tuple[Any, list[str]]:
        """The model's per-action scores and top features (v1 returned a tuple, v2 a NamedTuple)."""
        scored = self.model.score(feats)
        return scored[0], scored[1]

    def decide(
        self, events: list[dict[str, Any]], actions: list[dict[str, Any]], ev: dict[str, Any], now_ms: int
    ) -> str | None:
        """Features from the list, the score, and the policy's pick (or None)."""
        t = ev["t"]
        feats = self.features(events, actions, t)
        scores, top = self.score(feats)
        stats.scored += 1
        if isinstance(feats, list):  # v1: a vector in FEATURES order
            feats = dict(zip(self.features_module.FEATURES, feats, strict=True))
        day = t // 86_400_000
        ctx = self.policy.PolicyContext(
            event_time_ms=t,
            day_count=sum(1 for a in actions if a["t"] // 86_400_000 == day),
            last_action_ms={a["action"]: a["t"] for a in actions},
            opted_out=False,
            history_events=len(events),
            features=feats,
            lag_ms=now_ms - ev["q"] if ev.get("q") is not None else None,
        )
        decision = self.policy.decide(scores, ctx, self.rules, top)
        return decision.action_type  # type: ignore[no-any-return]


_domain: _Domain | None = None


def domain() -> _Domain:
    global _domain
    if _domain is None:
        _domain = _Domain()
    return _domain


# -- the naive functions -------------------------------------------------------------------------
def record(ev: dict[str, Any], partition: str | None, sequence: int | None, enqueued_ms: int | None) -> dict:
    """What the naive ingest sends for one event (and the entity keeps in its list)."""
    t = int(datetime.fromisoformat(str(ev["time"])).timestamp() * 1000)
    return {
        "id": ev["id"],
        "type": ev["type"],
        "t": t,
        "data": ev.get("data") or {},
        "p": partition,
        "s": sequence,
        "q": enqueued_ms,
    }


def used_types() -> frozenset[str]:
    return frozenset(domain().codes)


def hub_ingest(app: df.DFApp, name: str) -> Any:
    """The trigger of a benchmark design's ingest function: the binding the real ``ingest`` has
    (functions/ingest.py: cardinality many, binary bodies, a Durable client), on a fixed hub."""

    def wrap(fn: Any) -> Any:
        fn = app.durable_client_input(client_name="client")(fn)
        fn = app.event_hub_message_trigger(
            arg_name="events",
            event_hub_name="player-events",
            connection="EventHubConnection",
            consumer_group="$Default",
            cardinality="many",
            data_type=func.DataType.BINARY,
        )(fn)
        return app.function_name(name)(fn)

    return wrap


@hub_ingest(app, "naive_ingest")
async def naive_ingest(
    events: List[func.EventHubEvent],  # noqa: UP006 - see the import
    client: df.DurableOrchestrationClient,
) -> None:
    used = used_types()
    ctx = (events[0].metadata or {}).get("PartitionContext", {}) if events else {}
    partition = str(ctx.get("PartitionId")) if isinstance(ctx, dict) else None
    sends = []
    for e in events:
        try:
            ev = json.loads(e.get_body())
        except ValueError:
            continue
        if not isinstance(ev, dict) or ev.get("type") not in used or not ev.get("subject"):
            continue
        enq = e.enqueued_time
        q = int(enq.timestamp() * 1000) if enq is not None else None
        rec = record(ev, partition, e.sequence_number, q)
        sends.append(client.signal_entity(df.EntityId(ENTITY, ev["subject"]), "event", rec))
    await asyncio.gather(*sends)


def _is_trigger(events: list[dict[str, Any]], ev: dict[str, Any], scored_at: int) -> bool:
    etype = ev["type"]
    if etype in ALWAYS:
        return True
    if etype == "session.started":
        return sum(1 for e in events if e["type"] == "session.started") >= 2
    if etype != "round.completed":
        return False
    rounds = [e for e in events if e["type"] == "round.completed"]
    if sum(1 for e in rounds if e["t"] > scored_at) >= 10:
        return True
    streak = 0
    for e in reversed(rounds):
        if e["data"].get("payout", 0) < e["data"].get("stake", 0):
            streak += 1
        else:
            break
    return streak > 0 and streak % 5 == 0


def _now_ms() -> int:
    from shared import runtime

    return runtime.now_ms()


@app.entity_trigger(context_name="context", entity_name=ENTITY)
def naive_player(context: df.DurableEntityContext) -> None:
    """The state is one list of dicts: the buffered events (time order), the actions sent, and
    when it last scored."""
    state: list[dict[str, Any]] = context.get_state(list)
    if context.operation_name == "load":  # the benchmark's warm start
        context.set_state(context.get_input())
        return
    ev = context.get_input()
    if any(e.get("id") == ev["id"] for e in state):
        context.set_state(state)
        return
    state.append(ev)
    events = sorted((e for e in state if "id" in e), key=lambda e: e["t"])
    actions = [e for e in state if "action" in e][-20:]
    scored_at = max((e["scored"] for e in state if "scored" in e), default=0)
    events = [e for e in events if e["t"] >= events[-1]["t"] - MAX_AGE_MS][-MAX_EVENTS:]
    if events[-1] is ev and _is_trigger(events, ev, scored_at):
        scored_at = ev["t"]
        atype = domain().decide(events, actions, ev, _now_ms())
        if atype is not None:
            from shared import runtime
            from shared.store import get_store

            doc = {"id": f"naive-{ev['id']}-{atype}", "playerId": context.entity_key, "type": atype}
            get_store(runtime.settings().cosmos).create_actions([doc])
            actions.append({"action": atype, "t": ev["t"]})
            stats.actions += 1
    context.set_state([*events, *actions, {"scored": scored_at}])


def warm_state(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The naive state after ``records``, built directly: the trigger rule is replayed to know
    when it last scored, nothing is scored."""
    events: list[dict[str, Any]] = []
    scored_at = 0
    for ev in sorted(records, key=lambda e: e["t"]):
        events.append(ev)
        events = [e for e in events if e["t"] >= ev["t"] - MAX_AGE_MS][-MAX_EVENTS:]
        if _is_trigger(events, ev, scored_at):
            scored_at = ev["t"]
    return [*events, {"scored": scored_at}]
