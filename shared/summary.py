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

Issue 18 adds, per action type, the randomized holdout's comparison: every sent action and every
``holdout`` decision carries ``group`` and ``outcome`` (``windowEnd``, and ``metAt`` once an event
met it); a partial counts, per group, decisions, those met and those still open *as of* a time the
caller gives (never the machine's clock), and ``report`` turns the closed ones into an uplift
(rate difference) with a Newcombe hybrid score interval and a two-sided p-value. The challenger's
shadow aggregates (``kind`` ``shadow``) are summed into a block of agreement, decision matrix,
score sums (for a correlation) and differences by rule. Every figure is an integer, so merging
stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.entity.model import OUTCOME_GRACE_MS
from shared.outcomes import OUTCOMES as OUTCOME_DEFS
from shared.policy import ACTION_TYPES, RULES

SCHEMA = 2
HOURS = 24
DECILES = 10
SCORE_UNIT = 1_000_000  # scores are summed in millionths
SENT_STATUSES = ("pending", "accepted", "dismissed")
OTHER_RULE = "other"
# The rules a suppressed aggregate can name. ``min_score`` is not one: a score under its threshold
# makes no candidate, so no document (the policy counts those near misses in the ``pi.rejections``
# metric only); listing it here would show a rule that always counts 0.
REJECTION_RULES: tuple[str, ...] = (*(r for r in RULES if r != "min_score"), OTHER_RULE)
# Groups of the randomized holdout (shared.holdout), and the longest outcome window: a day is
# *final* once every outcome window of its decisions, and the entity's grace for late events
# (OUTCOME_GRACE_MS of shared.entity.model, 10 minutes), has passed.
GROUPS = ("treated", "holdout")
MAX_WINDOW_MS = max(o.window_ms for o in OUTCOME_DEFS.values())
DAY_MS = 86_400_000
Z95 = 1.959963984540054  # the 97.5% point of the standard normal
# The challenger's shadow aggregates: decisions are an action type or "none"; a difference is
# explained by a policy rule, "min_score", or "ranking" (shared.entity.shadow).
SHADOW_CHOICES: tuple[str, ...] = (*ACTION_TYPES, "none")
SHADOW_RULES: tuple[str, ...] = (*RULES, "ranking", OTHER_RULE)
SHADOW_SUMS = ("n", "sx", "sy", "sxx", "syy", "sxy")

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
    "group",
    "outcome",
    "kind",
    "agree",
    "matrix",
    "scores",
    "differByRule",
    "challengerVersion",
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
        # the holdout comparison, per group: [decisions, met (closed ones), open (window not over)]
        "treated": [0, 0, 0],
        "holdout": [0, 0, 0],
        # sent actions without a group or outcome (written before outcomes were tracked)
        "untracked": 0,
    }


def empty_shadow() -> dict[str, Any]:
    """The challenger's block of a partial: sums of the shadow aggregates (integers only)."""
    return {
        "documents": 0,
        "triggers": 0,
        "agree": 0,
        "matrix": {f"{c}|{h}": 0 for c in SHADOW_CHOICES for h in SHADOW_CHOICES},
        "differByRule": dict.fromkeys(SHADOW_RULES, 0),
        # per type: [n, sum x, sum y, sum x^2, sum y^2, sum xy], x champion and y challenger score,
        # in millionths (rounded per document)
        "scores": {t: [0] * len(SHADOW_SUMS) for t in ACTION_TYPES},
        # "champion|challenger" model versions -> triggers (one or two pairs a day)
        "versions": {},
    }


def empty() -> dict[str, Any]:
    """A partial of nothing: the identity of ``merge``."""
    return {
        "schema": SCHEMA,
        "documents": 0,
        "ignored": 0,  # documents with an unknown type or status (counted, never an error)
        "exportedRows": 0,
        "types": {t: empty_type() for t in ACTION_TYPES},
        "shadow": empty_shadow(),
    }


def add(partial: dict[str, Any], doc: Mapping[str, Any], as_of_ms: int | None = None) -> bool:
    """Fold one action document into ``partial``; False (and counted as ignored) when it does not fit
    the contract. Returns True for a document that was counted.

    ``as_of_ms``: the time the summary is taken at (the orchestration's clock): a decision whose
    outcome window (plus the entity's grace for late events) ends after it is *open*. None: every
    window counts as closed."""
    partial["documents"] += 1
    status = doc.get("status")
    if status == "shadow" or doc.get("kind") == "shadow":
        return _add_shadow(partial, doc)
    per = partial["types"].get(doc.get("type"))
    if per is None or status not in (*SENT_STATUSES, "suppressed", "holdout"):
        partial["ignored"] += 1
        return False
    if status == "suppressed":
        n = suppressed_count(doc)
        per["suppressed"] += n
        rule = doc.get("rejectedBy")
        per["rejections"][rule if rule in per["rejections"] else OTHER_RULE] += n
        return True
    if status == "holdout":
        if not _add_outcome(per, "holdout", doc, as_of_ms):
            per["untracked"] += 1  # a holdout decision always has one; counted, not compared
        return True
    per["sent"] += 1
    per[status] += 1
    if doc.get("group") != "treated" or not _add_outcome(per, "treated", doc, as_of_ms):
        per["untracked"] += 1
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


def _add_outcome(per: dict[str, Any], group: str, doc: Mapping[str, Any], as_of_ms: int | None) -> bool:
    """Count the decision in its group: met (``metAt``) or not, or open when its window plus the
    grace ends after ``as_of_ms``. False for a document without a readable outcome."""
    outcome = doc.get("outcome")
    if not isinstance(outcome, Mapping):
        return False
    end = _iso_ms(outcome.get("windowEnd"))
    if end is None:
        return False
    row = per[group]
    row[0] += 1
    if as_of_ms is not None and end + OUTCOME_GRACE_MS > as_of_ms:
        row[2] += 1
    elif outcome.get("metAt"):
        row[1] += 1
    return True


def _iso_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _add_shadow(partial: dict[str, Any], doc: Mapping[str, Any]) -> bool:
    """Sum one challenger aggregate (shared.entity.shadow) into the partial's shadow block."""
    block = partial["shadow"]
    block["documents"] += 1
    count = _count(doc.get("count"))
    block["triggers"] += count
    block["agree"] += min(_count(doc.get("agree")), count)
    matrix = doc.get("matrix")
    if isinstance(matrix, Mapping):
        for key, n in matrix.items():
            if key in block["matrix"]:
                block["matrix"][key] += _count(n)
    differ = doc.get("differByRule")
    if isinstance(differ, Mapping):
        for rule, n in differ.items():
            block["differByRule"][rule if rule in block["differByRule"] else OTHER_RULE] += _count(n)
    scores = doc.get("scores")
    if isinstance(scores, Mapping):
        for t, sums in scores.items():
            if t in block["scores"] and isinstance(sums, Mapping):
                row = block["scores"][t]
                n = _count(sums.get("n"))
                values = [_number(sums.get(k)) for k in SHADOW_SUMS[1:]]
                if n and all(v is not None for v in values):
                    row[0] += n
                    for i, v in enumerate(values, start=1):
                        row[i] += round(float(v or 0.0) * SCORE_UNIT)
    pair = f"{doc.get('modelVersion')}|{doc.get('challengerVersion')}"
    block["versions"][pair] = block["versions"].get(pair, 0) + count
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


def aggregate(docs: Iterable[Mapping[str, Any]], as_of_ms: int | None = None) -> dict[str, Any]:
    partial = empty()
    for doc in docs:
        add(partial, doc, as_of_ms)
    return partial


def _sum_dicts(a: Mapping[str, Any], b: Mapping[str, Any], keys: Iterable[str]) -> dict[str, int]:
    return {k: int(a.get(k, 0)) + int(b.get(k, 0)) for k in keys}


def _merge_shadow(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    out = empty_shadow()
    a, b = a or empty_shadow(), b or empty_shadow()
    for key in ("documents", "triggers", "agree"):
        out[key] = int(a[key]) + int(b[key])
    out["matrix"] = _sum_dicts(a["matrix"], b["matrix"], out["matrix"])
    out["differByRule"] = _sum_dicts(a["differByRule"], b["differByRule"], out["differByRule"])
    for t in ACTION_TYPES:
        out["scores"][t] = [int(x) + int(y) for x, y in zip(a["scores"][t], b["scores"][t], strict=True)]
    out["versions"] = _sum_dicts(a["versions"], b["versions"], sorted({*a["versions"], *b["versions"]}))
    return out


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Field-by-field sum of two partials (a new object; neither input is changed)."""
    out = empty()
    for key in ("documents", "ignored", "exportedRows"):
        out[key] = int(a.get(key, 0)) + int(b.get(key, 0))
    for t in ACTION_TYPES:
        ta, tb, to = a["types"][t], b["types"][t], out["types"][t]
        for key in ("sent", "accepted", "dismissed", "pending", "suppressed", "untracked"):
            to[key] = int(ta.get(key, 0)) + int(tb.get(key, 0))
        to["rejections"] = _sum_dicts(ta["rejections"], tb["rejections"], REJECTION_RULES)
        to["latency"] = [int(x) + int(y) for x, y in zip(ta["latency"], tb["latency"], strict=True)]
        to["deciles"] = [
            [int(x[0]) + int(y[0]), int(x[1]) + int(y[1]), int(x[2]) + int(y[2])]
            for x, y in zip(ta["deciles"], tb["deciles"], strict=True)
        ]
        for group in GROUPS:
            zero = [0, 0, 0]
            to[group] = [
                int(x) + int(y) for x, y in zip(ta.get(group, zero), tb.get(group, zero), strict=True)
            ]
    out["shadow"] = _merge_shadow(a.get("shadow"), b.get("shadow"))
    return out


def merge_all(partials: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out = empty()
    for p in partials:
        out = merge(out, p)
    return out


# -- statistics ----------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (n > 0)."""
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) of the difference p1 - p2: the Wilson
    intervals of the two rates combined by the square-and-add rule. Good coverage at small n and
    near 0 or 1, where the Wald interval collapses (a rate of 0/12 has a Wald width of 0)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z test (Pearson's chi-square without a
    continuity correction) of p1 = p2."""
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return 1.0  # both rates 0 or both 1: no difference to find
    zstat = (k1 / n1 - k2 / n2) / math.sqrt(var)
    return math.erfc(abs(zstat) / math.sqrt(2))


_Z80 = 0.8416212335729143  # the 80% point of the standard normal (power 80%)


def min_detectable_effect(n: int, base: float, z_alpha: float = Z95, z_power: float = _Z80) -> float:
    """The smallest uplift over ``base`` that a two-sided 5% test detects with 80% power with ``n``
    closed decisions per group (the textbook sample-size formula for two proportions, solved for
    the difference by bisection)."""
    if n <= 0:
        return math.inf

    def needed(delta: float) -> float:
        p2 = min(1.0, base + delta)
        mean = (base + p2) / 2
        a = z_alpha * math.sqrt(2 * mean * (1 - mean))
        b = z_power * math.sqrt(base * (1 - base) + p2 * (1 - p2))
        return ((a + b) / delta) ** 2

    lo, hi = 1e-6, 1.0 - base
    if hi <= lo or needed(hi) > n:
        return math.inf
    for _ in range(80):
        mid = (lo + hi) / 2
        if needed(mid) > n:
            lo = mid
        else:
            hi = mid
    return hi


def uplift(treated: list[int], holdout: list[int]) -> dict[str, Any]:
    """Treated vs holdout over their closed decisions: rates, uplift (difference), its 95% Newcombe
    interval and the two-sided p-value (None where a group has no closed decision)."""
    n1, k1, open1 = treated[0] - treated[2], treated[1], treated[2]
    n2, k2, open2 = holdout[0] - holdout[2], holdout[1], holdout[2]
    out: dict[str, Any] = {
        "treated": {"n": n1, "met": k1, "open": open1, "rate": _rate(k1, n1)},
        "holdout": {"n": n2, "met": k2, "open": open2, "rate": _rate(k2, n2)},
        "uplift": None,
        "ci95": None,
        "p": None,
    }
    if n1 > 0 and n2 > 0:
        low, high = newcombe(k1, n1, k2, n2)
        out["uplift"] = round(k1 / n1 - k2 / n2, 4)
        out["ci95"] = [round(low, 4), round(high, 4)]
        out["p"] = round(two_proportion_p(k1, n1, k2, n2), 6)
    return out


def shadow_report(block: Mapping[str, Any]) -> dict[str, Any]:
    """The challenger against the champion: agreement, who picked what, score correlation per type,
    the rules behind the differences."""
    matrix = block["matrix"]
    types: dict[str, Any] = {}
    for t in ACTION_TYPES:
        n = int(block["scores"][t][0])
        sx, sy, sxx, syy, sxy = (v / SCORE_UNIT for v in block["scores"][t][1:])
        corr = None
        if n >= 2:
            cov = n * sxy - sx * sy
            vx, vy = n * sxx - sx * sx, n * syy - sy * sy
            if vx > 0 and vy > 0:
                corr = round(max(-1.0, min(1.0, cov / math.sqrt(vx * vy))), 4)
        types[t] = {
            "championPicks": sum(v for k, v in matrix.items() if k.split("|")[0] == t),
            "challengerPicks": sum(v for k, v in matrix.items() if k.split("|")[1] == t),
            "bothPicked": matrix.get(f"{t}|{t}", 0),
            "scored": n,
            "meanChampionScore": round(sx / n, 4) if n else None,
            "meanChallengerScore": round(sy / n, 4) if n else None,
            "scoreCorrelation": corr,
        }
    return {
        "documents": block["documents"],
        "triggers": block["triggers"],
        "agree": block["agree"],
        "agreementRate": _rate(block["agree"], block["triggers"]),
        "matrix": {k: v for k, v in matrix.items() if v},
        "differByRule": {r: n for r, n in block["differByRule"].items() if n},
        "versions": dict(block["versions"]),
        "types": types,
    }


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
            "outcome": {
                "name": OUTCOME_DEFS[t].name,
                "windowMs": OUTCOME_DEFS[t].window_ms,
                **uplift(p.get("treated", [0, 0, 0]), p.get("holdout", [0, 0, 0])),
                "untracked": p.get("untracked", 0),
            },
        }
    return {
        "documents": partial["documents"],
        "ignored": partial["ignored"],
        "exportedRows": partial["exportedRows"],
        "types": types,
        "challenger": shadow_report(partial.get("shadow") or empty_shadow()),
    }


# -- days, ids, documents ------------------------------------------------------------------------


class BadDay(ValueError):
    """Not a YYYY-MM-DD day, or one that cannot be summarised (future, today, or expired)."""


def parse_day(text: str, today: date | None = None) -> date:
    """A summary day: ``YYYY-MM-DD`` exactly, not after ``today`` (UTC, from the injected clock)."""
    if not isinstance(text, str) or len(text) != 10:
        raise BadDay(f"day must be YYYY-MM-DD, got {text!r}")
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise BadDay(f"day must be YYYY-MM-DD, got {text!r}") from exc
    if day.isoformat() != text:  # Python 3.11 also reads ISO week dates of ten characters (2024-W01-1)
        raise BadDay(f"day must be YYYY-MM-DD, got {text!r}")
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


def day_start_ms(day: str) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def final_at_ms(day: str) -> int:
    """When a day's summary becomes final: every decision of the day (triggered before its end) has
    its outcome window closed and the entity's grace for late events passed."""
    return day_start_ms(day) + DAY_MS + MAX_WINDOW_MS + OUTCOME_GRACE_MS


def is_final(day: str, as_of_ms: int) -> bool:
    return as_of_ms >= final_at_ms(day)


def check_summarisable(text: str, now_ms: int, ttl_s: int) -> str:
    """The day to summarise, or ``BadDay`` saying why not: not a day, in the future, today (its
    actions are still being written: summarise it from tomorrow on), or older than the actions
    container keeps (``ttl_s``, ACTION_TTL_SECONDS: its first documents have expired, and a summary
    would replace a correct one with smaller counts; the summary documents themselves never expire
    and stay readable)."""
    today = utc_today(now_ms)
    day = parse_day(text, today)
    if day == today:
        raise BadDay(
            f"day {text} is today (UTC): its actions are still being written; "
            "it can be summarised from tomorrow (the 00:30 UTC timer does it)"
        )
    if day_start_ms(day.isoformat()) + ttl_s * 1000 <= now_ms:
        raise BadDay(
            f"day {text} is older than the actions container keeps (ACTION_TTL_SECONDS {ttl_s} s): its "
            "documents have expired, so a new summary would undercount; the existing summary stays "
            "readable (GET)"
        )
    return day.isoformat()


def kept_days(now_ms: int, ttl_s: int) -> list[str]:
    """The past days (newest first) whose action documents the container still keeps."""
    today = utc_today(now_ms)
    out: list[str] = []
    k = 1
    while True:
        day = (today - timedelta(days=k)).isoformat()
        if day_start_ms(day) + ttl_s * 1000 <= now_ms:
            return out
        out.append(day)
        k += 1


def days_due(now_ms: int, ttl_s: int, finals: Mapping[str, bool | None]) -> list[str]:
    """The days the daily timer (re)summarises: of the past days the actions container still keeps,
    those without a final summary (``finals``: day -> the index's ``final``, None or absent when
    there is no index). In steady state: yesterday's first run and the re-runs of the three days
    before, whose outcome windows were still open at their last run, so late outcomes and answers
    are counted; a day missed while the app was down is caught up. Newest first."""
    return [d for d in kept_days(now_ms, ttl_s) if finals.get(d) is not True]


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
    day: str, hour: int, partial: Mapping[str, Any], blob: str | None, at: str, run: str | None = None
) -> dict[str, Any]:
    """The child's summary document: its hour's partial, as counted, with its export's blob name
    and the run that wrote it (the index names the run its parts must carry)."""
    return {
        "id": part_id(day, hour),
        "day": day,
        "kind": "hour",
        "hour": hour,
        "schema": SCHEMA,
        "run": run,
        "partial": dict(partial),
        "summary": report(partial),
        "export": blob,
        "writtenAt": at,
    }


def index_document(
    day: str,
    merged: Mapping[str, Any],
    parts: list[str],
    exports: list[str],
    run: str,
    at: str,
    as_of_ms: int | None = None,
) -> dict[str, Any]:
    """The parent's index document: the day's merged summary, the ids of its parts, the run id every
    part and export of this run carries, the time it was taken as of and whether it is final."""
    return {
        "id": index_id(day),
        "day": day,
        "kind": "index",
        "schema": SCHEMA,
        "run": run,
        "asOf": iso_of_ms(as_of_ms) if as_of_ms is not None else None,
        "final": as_of_ms is not None and is_final(day, as_of_ms),
        "finalAt": iso_of_ms(final_at_ms(day)),
        "parts": parts,
        "exports": exports,
        "partial": dict(merged),
        "summary": report(merged),
        "writtenAt": at,
    }


# -- the retraining export -------------------------------------------------------------------------

EXPORT_SCHEMA = "pi-retraining-rows/1"
OUTCOMES = ("accepted", "dismissed", "none")


def export_header(features: list[str], day: str, hour: int, run: str | None = None) -> dict[str, Any]:
    return {"schema": EXPORT_SCHEMA, "day": day, "hour": hour, "run": run, "features": features}


def mixed_parts(index: Mapping[str, Any], parts: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of the hour documents not written by the index's run (a re-run that failed part-way
    left them, or the index is older than they are)."""
    run = index.get("run")
    return sorted(str(p.get("id")) for p in parts if p.get("run") != run)


def iso_of_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
