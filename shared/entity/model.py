"""The entity's data model: typed, named structs with short keys in the stored form.

The stored form is compact (``shared.entity.codec``: MessagePack, buffer entries
as arrays); the code only ever sees names. Field names double as the stored keys,
so renaming a field is a state migration (``codec.upgrade``).
"""

from __future__ import annotations

import msgspec

# 3: buffer entries and evicted keys are 64-bit hashes of CloudEvents source + id (a version 2
# state's 32-bit hashes of the id alone are read as they are: shared.entity.dedupe).
# 4: outcome watches (``watch``) and the challenger's open shadow aggregate (``shd``); a version 3
# state has neither and is read as it is.
STATE_VERSION = 4
MAX_BUFFER_EVENTS = 96
MAX_BUFFER_AGE_MS = 6 * 3600 * 1000
EVICTED_ID_RING = 32
SEEN_RANGES = 16  # per partition: a signal reordered behind 16 later ones is taken as a replay
SEEN_RANGES_TOTAL = 24  # across partitions, so a player spread over many partitions stays small
OUTBOX_TTL_MS = 3600 * 1000
MAX_REFUSED = 20
# Suppressed-decision records waiting in the outbox at most (the newest are kept): while Cosmos
# is down a player in a cooldown would otherwise grow its state without bound.
MAX_SUPPRESSED_PENDING = 8
# The challenger's aggregates of closed hours waiting at most (shared.entity.shadow): the newest kept.
MAX_SHADOW_PENDING = 1
HOUR_MS = 3600 * 1000
# Suppressed decisions are written as one aggregate per (UTC hour, action type, rule): a count and
# the first few decisions as examples, at most SUPPRESSED_EXAMPLES each and SUPPRESSED_EXAMPLES_HELD
# over every aggregate the state holds (so 21 type x rule pairs in one hour cannot grow the state).
SUPPRESSED_EXAMPLES = 2
SUPPRESSED_EXAMPLES_HELD = 12
# Outcome watches (shared.outcomes): at most this many open (the oldest is dropped, counted), each
# kept until its window plus this grace has passed on the wall clock (events may arrive that late).
MAX_WATCHES = 8
OUTCOME_GRACE_MS = 10 * 60_000


class Entry(msgspec.Struct, array_like=True):
    """One buffered event, stored as ``[t, kind, a, b, h]``: what features and dedupe need, no more
    (the state crosses the Durable protocol on every operation, so its size is its CPU cost)."""

    t: int  # event time, epoch ms
    kind: int  # shared.eventtypes.EventType
    # The lifted numbers (a round's stake and payout, an amount, 1 for an accepted response); an
    # integral one is kept as an int (1 byte stored, not 9).
    a: int | float
    b: int | float
    # Dedupe key: a 64-bit hash of the CloudEvent's source and id (dedupe.id_hash), 9 bytes
    # stored whatever their length; below 2³² it is a version 2 state's CRC-32 of the id alone.
    h: int


class Aggregates(msgspec.Struct, omit_defaults=True):
    """Lifetime counters. The counts are commutative (reordering cannot skew them);
    the session lengths are not: a session end that arrives before its start is
    not measured."""

    first_ms: int = 0
    events: int = 0
    sessions: int = 0
    session_minutes_sum: float = 0.0
    session_count_closed: int = 0
    deposits: int = 0
    deposit_failures: int = 0
    accepted: int = 0
    dismissed: int = 0
    last_end_ms: int = 0
    prev_end_ms: int = 0
    # Start of the newest session; survives the start event's eviction from the buffer.
    session_open_ms: int = 0


class ActionRecord(msgspec.Struct, tag="a", tag_field="k", omit_defaults=True):
    """A decision to write: an action sent (``pending``), one the randomized holdout withheld
    (``holdout``: written, never delivered) or a candidate a guardrail stopped (``suppressed``, with
    the rule). ``shared.store.action_document`` makes the Cosmos document."""

    id: str
    type: str
    status: str  # "pending" | "holdout" | "suppressed"
    score: float
    scores: list[float]  # per shared.policy.ACTION_TYPES
    features: list[float]  # in the model card's order for ``model``
    model: str
    trigger: str  # the trigger event's id
    t: int  # the trigger's event time
    decided_ms: int
    reasons: list[str] = msgspec.field(default_factory=list)
    rejected_by: str | None = None
    tp: str | None = None  # the trigger event's traceparent


class SuppressedExample(msgspec.Struct, array_like=True):
    """One suppressed decision kept as an example: ``[trigger, t, score, features]``."""

    trigger: str  # the trigger event's id
    t: int  # its event time
    score: float  # the suppressed type's score
    features: list[float]  # the scored row, in the model card's order


class SuppressedAggregate(msgspec.Struct, tag="s", tag_field="k", omit_defaults=True):
    """Every candidate of one action type one rule stopped in one UTC hour of event time, for one player.

    The entity holds the running count and writes the whole document (``shared.store.
    suppressed_document``) under a deterministic id, replacing it: a re-run entity batch starts from
    the state before it and rewrites the same count, so nothing is counted twice."""

    id: str
    type: str
    rule: str
    hour_ms: int  # start of the UTC hour of the triggers' event times
    count: int
    first_ms: int  # event time of the first and the last trigger counted
    last_ms: int
    model: str  # the model version of the last decision counted
    decided_ms: int  # when the last decision counted was made (wall clock)
    examples: list[SuppressedExample] = msgspec.field(default_factory=list)


class OutcomeRecord(msgspec.Struct, tag="o", tag_field="k"):
    """A player's response to an action, to record on the action's document."""

    action_id: str
    response: str  # "accepted" | "dismissed"
    t: int  # the response event's time


class OutcomeMet(msgspec.Struct, tag="m", tag_field="k"):
    """An action's (or holdout decision's) outcome event seen inside its window: to record on its
    document as ``outcome.metAt`` / ``outcome.eventId``, once (ActionStore.record_outcome_met)."""

    action_id: str
    t: int  # the meeting event's time
    event_id: str  # its CloudEvent id


class Watch(msgspec.Struct, array_like=True):
    """An open outcome window, stored as ``[action_id, type, t0, end, decided_ms]``: an accepted
    event of the type's outcome event with ``t0 < t <= end`` (event time) meets it."""

    action_id: str
    type: int  # index in shared.policy.ACTION_TYPES
    t0: int  # the trigger's event time
    end: int  # t0 + the outcome window
    decided_ms: int  # wall clock of the decision: the watch leaves after window + OUTCOME_GRACE_MS


class ShadowAggregate(msgspec.Struct, tag="h", tag_field="k", omit_defaults=True):
    """The challenger model's would-be decisions next to the champion's, for one player and one UTC
    hour of trigger event time (``shared.store.shadow_document``). Written like a suppressed
    aggregate: the whole document replaced under a deterministic id, once per operation."""

    id: str
    hour_ms: int
    count: int  # triggers scored by both models
    agree: int  # triggers where both decided alike (the same type, or both nothing)
    first_ms: int
    last_ms: int
    model: str  # champion version (of the last trigger counted)
    challenger: str  # challenger version
    decided_ms: int
    # Triggers by (champion's decision, challenger's decision), row-major over ("none", *ACTION_TYPES)
    # squared (shared.entity.shadow.DECISIONS): 16 counts, not 16 keyed strings.
    matrix: list[int] = msgspec.field(default_factory=list)
    # per shared.policy.ACTION_TYPES: [n, sx, sy, sxx, syy, sxy] (x champion, y challenger score)
    sums: list[list[float]] = msgspec.field(default_factory=list)
    # rule -> triggers where they differ (see shared.entity.shadow.differ_rule)
    differ: dict[str, int] = msgspec.field(default_factory=dict)


class OutboxItem(msgspec.Struct, omit_defaults=True):
    rec: ActionRecord | OutcomeRecord | SuppressedAggregate | OutcomeMet | ShadowAggregate
    since_ms: int
    attempts: int = 0
    # When the trigger event reached Event Hubs: the start of the action's latency.
    enqueued_ms: int | None = None
    # W3C traceparent of the decision's span: the Cosmos write continues that trace.
    trace: str | None = None

    @property
    def id(self) -> str:
        """The document this item writes (an outcome's is its action's)."""
        rec = self.rec
        if isinstance(rec, OutcomeRecord):
            return "outcome:" + rec.action_id
        if isinstance(rec, OutcomeMet):
            return "met:" + rec.action_id
        return rec.id


class RefusedAction(msgspec.Struct, omit_defaults=True):
    """An action Cosmos DB refused for good (400, 413): kept, bounded, with the reason."""

    id: str
    type: str
    status: int
    at_ms: int


class PlayerState(msgspec.Struct, omit_defaults=True):
    v: int = STATE_VERSION
    buf: list[Entry] = msgspec.field(default_factory=list)
    seen: dict[str, list[list[int]]] = msgspec.field(default_factory=dict)
    floor: dict[str, int] = msgspec.field(default_factory=dict)
    # Newest enqueued time seen per partition: a redelivery is never newer, so an
    # event that is newer yet falls in a seen range means the sequence restarted.
    qhi: dict[str, int] = msgspec.field(default_factory=dict)
    evicted: list[int] = msgspec.field(default_factory=list)  # dedupe keys of recently evicted events
    # Loaded from a version 2 state whose CRC-32 keys are still in ``buf`` or ``evicted``: the old
    # dedupe rule applies to them (shared.entity.dedupe); cleared once they are gone.
    v2_keys: bool = False
    agg: Aggregates = msgspec.field(default_factory=Aggregates)
    newest_ms: int = 0
    rounds_since_score: int = 0
    opted_out: bool = False
    opt_ms: int = 0
    last_action_ms: dict[str, int] = msgspec.field(default_factory=dict)
    # Start (epoch ms) of the UTC day the daily cap counts, and the actions counted in it.
    day_ms: int = 0
    day_count: int = 0
    outbox: list[OutboxItem] = msgspec.field(default_factory=list)
    # Suppressed aggregates of the newest hour already written (clean): kept to go on counting. One
    # that changes moves back into the outbox; the hour's are dropped once a later hour triggers.
    sup: list[SuppressedAggregate] = msgspec.field(default_factory=list)
    # When the outbox reminder the entity asked for is due (wall clock ms); 0: none pending.
    remind_ms: int = 0
    # Reminders asked in a row for an erasure or sweep that keeps failing: their back-off.
    retries: int = 0
    refused: list[RefusedAction] = msgspec.field(default_factory=list)
    # An erasure whose Cosmos deletes have not succeeded yet: only dedupe marks are kept.
    erasing: bool = False
    # When the player was erased (wall clock): events enqueued before it are
    # replays of the erased history and are dropped.
    erased_ms: int = 0
    # Open outcome windows of the decisions sent or held out (oldest first, at most MAX_WATCHES).
    watch: list[Watch] = msgspec.field(default_factory=list)
    # The challenger's aggregate of the newest hour once written (kept to go on counting, as ``sup``).
    shd: ShadowAggregate | None = None
