"""Daily summaries of the actions container: pure aggregation into fixed-size, mergeable partials.

A *partial* aggregates any set of action documents (one hour of one day, in the daily summary
orchestration) into a JSON object whose size does not depend on how many documents went in:
per action type, counters, rejections per guardrail rule, a latency histogram with fixed
log-spaced buckets, and per score decile (count, score sum, accepted). Two partials merge by
adding them field by field, so a parent can combine any number of children's partials and get
exactly what one pass over all the documents would give; the merge is associative and
commutative, which is what makes the fan-out safe to re-run.

Medians come from the histogram: buckets are quarter-octaves (each edge ``2 ** (1/4)`` times the
previous, from 1 s), so the median is known to within its bucket (a factor of about 1.19; the
reported value is the bucket's geometric midpoint, at most ~9% off). Deciles are fixed score
bins (``[0, 0.1)``, ..., ``[0.9, 1.0]``), not rank deciles, because rank deciles cannot be merged
from fixed-size partials.

The document contract (docs/contracts.md, written by the Player entity): ``status`` is
``pending``/``accepted``/``dismissed`` for an action that was sent, ``suppressed`` (with
``rejectedBy``) for the hourly aggregate of the candidates one guardrail rule stopped, whose
``count`` is how many (a document without one, from before the aggregates, is one decision);
``responseLatencyMs`` once answered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.policy import ACTION_TYPES, RULES

SCHEMA = 1
HOURS = 24
DECILES = 10
SCORE_UNIT = 1_000_000  # scores are summed in millionths
SENT_STATUSES = ("pending", "accepted", "dismissed")
OTHER_RULE = "other"
REJECTION_RULES: tuple[str, ...] = (*RULES, OTHER_RULE)

# Latency histogram: bucket 0 is [0, 1 s); bucket k (1 <= k < N-1) is [2**((k-1)/4), 2**(k/4)) s;
# the last bucket holds everything from 2**((N-2)/4) s (about 51 hours) up.
LATENCY_BUCKETS = 72
_QUARTER_OCTAVE = 2**0.25

# What the activities read from each action document (a projection: no ids, no player).
ACTION_FIELDS = (
    "type",
    "status",
    "rejectedBy",
    "score",
    "responseLatencyMs",
    "features",
    "modelVersion",
    "hour",
    "count",
)


def latency_bucket(ms: float) -> int:
    seconds = max(0.0, ms / 1000.0)
    if seconds < 1.0:
        return 0
    k = int(math.floor(math.log2(seconds) * 4)) + 1
    return min(max(k, 1), LATENCY_BUCKETS - 1)


def bucket_bounds_s(k: int) -> tuple[float, float]:
    """(low, high) seconds of latency bucket ``k`` (high is inf for the last)."""
    if k == 0:
        return 0.0, 1.0
    low = _QUARTER_OCTAVE ** (k - 1)
    return low, (math.inf if k == LATENCY_BUCKETS - 1 else _QUARTER_OCTAVE**k)


def decile(score: float) -> int:
    return min(DECILES - 1, max(0, int(math.floor(score * DECILES))))


def empty_type() -> dict[str, Any]:
    return {
        "sent": 0,
        "accepted": 0,
        "dismissed": 0,
        "pending": 0,
        "suppressed": 0,
        "rejections": dict.fromkeys(REJECTION_RULES, 0),
        "latency": [0] * LATENCY_BUCKETS,
        # per score decile: [actions sent, sum of their scores in millionths, accepted]; integers, so
        # a sum is exact and the same in any order of merging
        "deciles": [[0, 0, 0] for _ in range(DECILES)],
    }


def empty() -> dict[str, Any]:
    """A partial of nothing: the identity of ``merge``."""
    return {
        "schema": SCHEMA,
        "documents": 0,
        "ignored": 0,  # documents with an unknown type or status (counted, never an error)
        "exportedRows": 0,
        "types": {t: empty_type() for t in ACTION_TYPES},
    }


def add(partial: dict[str, Any], doc: Mapping[str, Any]) -> bool:
    """Fold one action document into ``partial``; False (and counted as ignored) when it does not fit
    the contract. Returns True for a document that was counted."""
    partial["documents"] += 1
    per = partial["types"].get(doc.get("type"))
    status = doc.get("status")
    if per is None or status not in (*SENT_STATUSES, "suppressed"):
        partial["ignored"] += 1
        return False
    if status == "suppressed":
        n = suppressed_count(doc)
        per["suppressed"] += n
        rule = doc.get("rejectedBy")
        per["rejections"][rule if rule in per["rejections"] else OTHER_RULE] += n
        return True
    per["sent"] += 1
    per[status] += 1
    score = _number(doc.get("score"))
    if score is not None:
        row = per["deciles"][decile(score)]
        row[0] += 1
        row[1] += round(score * SCORE_UNIT)
        row[2] += 1 if status == "accepted" else 0
    latency = _number(doc.get("responseLatencyMs"))
    if status != "pending" and latency is not None:
        per["latency"][latency_bucket(latency)] += 1
    return True


def suppressed_count(doc: Mapping[str, Any]) -> int:
    """The decisions a suppressed document stands for: an hourly aggregate's ``count``; 1 for a
    document of one decision (written before the aggregates) or a count that is not a positive int."""
    count = doc.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return count
    return 1


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def aggregate(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    partial = empty()
    for doc in docs:
        add(partial, doc)
    return partial


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Field-by-field sum of two partials (a new object; neither input is changed)."""
    out = empty()
    for key in ("documents", "ignored", "exportedRows"):
        out[key] = int(a.get(key, 0)) + int(b.get(key, 0))
    for t in ACTION_TYPES:
        ta, tb, to = a["types"][t], b["types"][t], out["types"][t]
        for key in ("sent", "accepted", "dismissed", "pending", "suppressed"):
            to[key] = int(ta[key]) + int(tb[key])
        for rule in REJECTION_RULES:
            to["rejections"][rule] = int(ta["rejections"].get(rule, 0)) + int(tb["rejections"].get(rule, 0))
        to["latency"] = [int(x) + int(y) for x, y in zip(ta["latency"], tb["latency"], strict=True)]
        to["deciles"] = [
            [int(x[0]) + int(y[0]), int(x[1]) + int(y[1]), int(x[2]) + int(y[2])]
            for x, y in zip(ta["deciles"], tb["deciles"], strict=True)
        ]
    return out


def merge_all(partials: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out = empty()
    for p in partials:
        out = merge(out, p)
    return out


def median_latency_ms(histogram: list[int]) -> float | None:
    """The median response time from the histogram: the geometric midpoint of the median's bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    half = total / 2
    seen = 0
    for k, n in enumerate(histogram):
        seen += n
        if seen >= half:
            low, high = bucket_bounds_s(k)
            if k == 0:
                return 500.0
            mid = low * _QUARTER_OCTAVE**0.5 if math.isinf(high) else math.sqrt(low * high)
            return round(mid * 1000.0, 1)
    return None  # pragma: no cover - unreachable: seen reaches total


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def report(partial: Mapping[str, Any]) -> dict[str, Any]:
    """What a summary shows, per action type: the counts, the rates, the median response time,
    rejections per rule and the calibration table (per score decile: count, mean score, acceptance)."""
    types: dict[str, Any] = {}
    for t in ACTION_TYPES:
        p = partial["types"][t]
        calibration = []
        for k, (n, score_sum, accepted) in enumerate(p["deciles"]):
            calibration.append(
                {
                    "decile": k,
                    "low": k / DECILES,
                    "high": (k + 1) / DECILES,
                    "count": n,
                    "meanScore": round(score_sum / SCORE_UNIT / n, 4) if n else None,
                    "acceptanceRate": _rate(accepted, n),
                }
            )
        answered = p["accepted"] + p["dismissed"]
        types[t] = {
            "sent": p["sent"],
            "accepted": p["accepted"],
            "dismissed": p["dismissed"],
            "noResponse": p["pending"],
            "acceptanceRate": _rate(p["accepted"], p["sent"]),
            "responseRate": _rate(answered, p["sent"]),
            "medianResponseMs": median_latency_ms(p["latency"]),
            "suppressed": p["suppressed"],
            "rejectionsByRule": {r: n for r, n in p["rejections"].items() if n},
            "calibration": calibration,
        }
    return {
        "documents": partial["documents"],
        "ignored": partial["ignored"],
        "exportedRows": partial["exportedRows"],
        "types": types,
    }


# -- days, ids, documents ------------------------------------------------------------------------


class BadDay(ValueError):
    """Not a YYYY-MM-DD day, or one in the future."""


def parse_day(text: str, today: date | None = None) -> date:
    """A summary day: ``YYYY-MM-DD`` exactly, not after ``today`` (UTC, from the injected clock)."""
    if not isinstance(text, str) or len(text) != 10:
        raise BadDay(f"day must be YYYY-MM-DD, got {text!r}")
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise BadDay(f"day must be YYYY-MM-DD, got {text!r}") from exc
    if today is not None and day > today:
        raise BadDay(f"day {text} is in the future (today is {today.isoformat()} UTC)")
    return day


def utc_today(now_ms: int) -> date:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).date()


def day_from_ms(ms: int) -> str:
    """The UTC day (YYYY-MM-DD) of an epoch-milliseconds instant."""
    return utc_today(ms).isoformat()


def yesterday(now_ms: int) -> str:
    return (utc_today(now_ms) - timedelta(days=1)).isoformat()


def instance_id(day: str) -> str:
    """The orchestration instance id of a day's summary: one per day, so a rerun replaces it."""
    return f"summary-{day}"


def part_id(day: str, hour: int) -> str:
    return f"{day}.hour-{hour:02d}"


def index_id(day: str) -> str:
    return f"{day}.index"


def export_blob_name(day: str, hour: int) -> str:
    return f"{day}/hour-{hour:02d}.jsonl"


def part_document(
    day: str, hour: int, partial: Mapping[str, Any], blob: str | None, at: str
) -> dict[str, Any]:
    """The child's summary document: its hour's partial, as counted, with its export's blob name."""
    return {
        "id": part_id(day, hour),
        "day": day,
        "kind": "hour",
        "hour": hour,
        "schema": SCHEMA,
        "partial": dict(partial),
        "summary": report(partial),
        "export": blob,
        "writtenAt": at,
    }


def index_document(
    day: str, merged: Mapping[str, Any], parts: list[str], exports: list[str], run: str, at: str
) -> dict[str, Any]:
    """The parent's index document: the day's merged summary and the ids of its parts."""
    return {
        "id": index_id(day),
        "day": day,
        "kind": "index",
        "schema": SCHEMA,
        "run": run,
        "parts": parts,
        "exports": exports,
        "partial": dict(merged),
        "summary": report(merged),
        "writtenAt": at,
    }


# -- the retraining export -------------------------------------------------------------------------

EXPORT_SCHEMA = "pi-retraining-rows/1"
OUTCOMES = ("accepted", "dismissed", "none")


def export_header(features: list[str], day: str, hour: int) -> dict[str, Any]:
    return {"schema": EXPORT_SCHEMA, "day": day, "hour": hour, "features": features}


def export_row(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """One (features, action, outcome) row of a sent action; None for suppressed or malformed ones.

    No player id, action id or time beyond the hour: the rows are for retraining, not for finding
    anyone again (an erasure does not have to reach them)."""
    status = doc.get("status")
    features = doc.get("features")
    if status not in SENT_STATUSES or doc.get("type") not in ACTION_TYPES or not isinstance(features, list):
        return None
    return {
        "action": doc["type"],
        "outcome": "none" if status == "pending" else status,
        "score": doc.get("score"),
        "modelVersion": doc.get("modelVersion"),
        "features": features,
    }
