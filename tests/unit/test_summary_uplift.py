"""The holdout comparison, the challenger block and the day rules of shared/summary.py (issue 18).

Statistics against published values: Newcombe (1998), "Interval estimation for the difference
between independent proportions: comparison of eleven methods", Statistics in Medicine 17,
873-890, Table II, method 10 (hybrid score); Wilson's interval for 81/263 from Newcombe's
companion paper on single proportions (same issue, 857-872).
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import summary
from shared.policy import ACTION_TYPES, RULES
from shared.timeutil import iso_ms

DAY = "2030-03-14"
T0 = summary.day_start_ms(DAY) + 9 * 3_600_000  # 09:00 UTC
WINDOW = {"break_suggestion": 15 * 60_000, "help_offer": 30 * 60_000, "bonus_offer": 72 * 3_600_000}


def decision(
    atype: str = "break_suggestion",
    group: str = "treated",
    met: bool = False,
    t0: int = T0,
    status: str | None = None,
) -> dict[str, Any]:
    outcome: dict[str, Any] = {"name": "x", "windowEnd": iso_ms(t0 + WINDOW[atype])}
    if met:
        outcome.update(metAt=iso_ms(t0 + 60_000), eventId="e-1")
    return {
        "type": atype,
        "status": status or ("holdout" if group == "holdout" else "pending"),
        "group": group,
        "outcome": outcome,
        "score": 0.8,
        "features": [0.1] * 24,
        "modelVersion": "m1",
        "hour": 9,
    }


def shadow(
    pairs: list[tuple[str, str]], xs: list[float], ys: list[float], differ: dict[str, int]
) -> dict[str, Any]:
    """A shd- aggregate as the entity writes it (shared.store.shadow_document), scores of one type."""
    matrix: dict[str, int] = {}
    for c, h in pairs:
        matrix[f"{c}|{h}"] = matrix.get(f"{c}|{h}", 0) + 1
    sums = {
        "n": len(xs),
        "sx": sum(xs),
        "sy": sum(ys),
        "sxx": sum(x * x for x in xs),
        "syy": sum(y * y for y in ys),
        "sxy": sum(x * y for x, y in zip(xs, ys, strict=True)),
    }
    return {
        "id": "shd-0",
        "kind": "shadow",
        "status": "shadow",
        "day": DAY,
        "hour": 9,
        "modelVersion": "m1",
        "challengerVersion": "m2",
        "count": len(pairs),
        "agree": sum(1 for c, h in pairs if c == h),
        "matrix": matrix,
        "scores": {"help_offer": {k: round(v, 9) if k != "n" else v for k, v in sums.items()}},
        "differByRule": differ,
    }


# -- statistics ---------------------------------------------------------------------------------


def test_wilson_interval_matches_the_published_example() -> None:
    low, high = summary.wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
    ],
)
def test_newcombe_hybrid_score_interval_matches_newcombe_1998_table_ii(
    k1: int, n1: int, k2: int, n2: int, low: float, high: float
) -> None:
    got = summary.newcombe(k1, n1, k2, n2)
    assert (round(got[0], 4), round(got[1], 4)) == (low, high)


def test_two_sided_p_value_of_the_pooled_z_test() -> None:
    # 56/70 vs 48/80: pooled 104/150, z = 2.650, chi-square 7.024 (no continuity correction)
    p = summary.two_proportion_p(56, 70, 48, 80)
    assert p == pytest.approx(0.00805, abs=5e-5)
    z = math.sqrt(2) * _erfcinv(p)
    assert z * z == pytest.approx(7.024, abs=0.01)
    assert summary.two_proportion_p(5, 10, 5, 10) == 1.0
    assert summary.two_proportion_p(0, 10, 0, 20) == 1.0  # nothing happened in either group
    assert summary.two_proportion_p(10, 10, 0, 10) < 1e-4


def _erfcinv(p: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erfc(mid) > p else (lo, mid)
    return lo


def test_minimum_detectable_effect_follows_the_sample_size_formula() -> None:
    # n = 400 per group, baseline 0.5: the textbook formula gives n = 388 for 0.5 -> 0.6
    assert summary.min_detectable_effect(388, 0.5) == pytest.approx(0.10, abs=0.002)
    mde = [summary.min_detectable_effect(n, 0.2) for n in (100, 400, 1600)]
    assert mde[0] > mde[1] > mde[2] and mde[1] == pytest.approx(mde[0] / 2, rel=0.15)
    assert summary.min_detectable_effect(0, 0.2) == math.inf
    assert summary.min_detectable_effect(3, 0.5) == math.inf  # no effect up to 1.0 is detectable


def test_the_coverage_of_the_interval_is_near_95_percent() -> None:
    """Simulated: two groups of 60 with rates 0.3 and 0.5; the interval holds the true -0.2 in about
    95% of 2,000 draws (Wald's covers less at this size)."""
    rng = random.Random(11)
    hits = 0
    for _ in range(2000):
        k1 = sum(rng.random() < 0.3 for _ in range(60))
        k2 = sum(rng.random() < 0.5 for _ in range(60))
        low, high = summary.newcombe(k1, 60, k2, 60)
        hits += low <= -0.2 <= high
    assert 0.93 <= hits / 2000 <= 0.975


# -- outcomes in a partial -------------------------------------------------------------------------


def test_treated_and_holdout_counts_with_open_windows_as_of_a_given_time() -> None:
    docs = [
        *(decision(met=True) for _ in range(6)),
        *(decision() for _ in range(4)),
        *(decision(group="holdout", met=True) for _ in range(2)),
        *(decision(group="holdout") for _ in range(6)),
        decision(status="accepted", met=True),
        # a bonus offer decided at 09:00: its 72 hour window is open until the 17th, 09:10 with the grace
        decision("bonus_offer", met=True),
        decision("bonus_offer", group="holdout"),
        # written before outcomes were tracked: a sent action without group or outcome
        {"type": "help_offer", "status": "pending", "score": 0.7, "hour": 9},
    ]
    as_of = summary.day_start_ms(DAY) + 2 * 86_400_000  # the 16th, 00:00
    rep = summary.report(summary.aggregate(docs, as_of))
    brk = rep["types"]["break_suggestion"]["outcome"]
    assert brk["name"] == "session_end_15m" and brk["windowMs"] == 15 * 60_000
    assert brk["treated"] == {"n": 11, "met": 7, "open": 0, "rate": round(7 / 11, 4)}
    assert brk["holdout"] == {"n": 8, "met": 2, "open": 0, "rate": 0.25}
    low, high = summary.newcombe(7, 11, 2, 8)
    assert brk["uplift"] == round(7 / 11 - 0.25, 4) and brk["ci95"] == [round(low, 4), round(high, 4)]
    assert brk["p"] == round(summary.two_proportion_p(7, 11, 2, 8), 6)
    assert rep["types"]["break_suggestion"]["sent"] == 11  # holdout decisions are not "sent"
    bonus = rep["types"]["bonus_offer"]["outcome"]
    assert (bonus["treated"]["open"], bonus["holdout"]["open"]) == (1, 1)
    assert (bonus["treated"]["n"], bonus["uplift"], bonus["ci95"], bonus["p"]) == (0, None, None, None)
    help_ = rep["types"]["help_offer"]
    assert help_["sent"] == 1 and help_["outcome"]["untracked"] == 1 and help_["outcome"]["treated"]["n"] == 0
    # once the window and the grace are over, the bonus decisions are closed: met / not met
    closed = summary.report(summary.aggregate(docs, summary.final_at_ms(DAY)))
    later = closed["types"]["bonus_offer"]["outcome"]
    assert later["treated"] == {"n": 1, "met": 1, "open": 0, "rate": 1.0}
    assert later["holdout"] == {"n": 1, "met": 0, "open": 0, "rate": 0.0}
    # without an as-of time every window counts as closed
    assert summary.report(summary.aggregate(docs))["types"]["bonus_offer"]["outcome"]["treated"]["n"] == 1


def test_a_window_inside_the_grace_is_still_open() -> None:
    end = T0 + WINDOW["break_suggestion"]
    grace = summary.OUTCOME_GRACE_MS
    for as_of, open_ in ((end, 1), (end + grace - 1, 1), (end + grace, 0)):
        rep = summary.report(summary.aggregate([decision()], as_of))
        assert rep["types"]["break_suggestion"]["outcome"]["treated"]["open"] == open_


def test_malformed_outcomes_are_untracked_never_an_error() -> None:
    docs = [
        {**decision(), "outcome": "met"},
        {**decision(), "outcome": {"windowEnd": "yesterday"}},
        {**decision(group="holdout"), "outcome": None},
        {**decision(), "group": "control"},
    ]
    rep = summary.report(summary.aggregate(docs, T0))["types"]["break_suggestion"]
    assert rep["outcome"]["untracked"] == 4 and rep["outcome"]["treated"]["n"] == 0
    assert rep["sent"] == 3


# -- the challenger ---------------------------------------------------------------------------------


def test_the_challenger_block_agreement_matrix_rules_and_score_correlation() -> None:
    rng = random.Random(4)
    xs = [rng.random() for _ in range(30)]
    ys = [0.6 * x + 0.4 * rng.random() for x in xs]
    pairs = [("help_offer", "help_offer")] * 20 + [("help_offer", "none")] * 6 + [("none", "bonus_offer")] * 4
    docs = [
        shadow(pairs[:15], xs[:15], ys[:15], {"min_score": 3}),
        shadow(pairs[15:], xs[15:], ys[15:], {"min_score": 3, "cooldown": 2, "ranking": 1, "brand_new": 1}),
    ]
    rep = summary.report(summary.aggregate(docs))
    ch = rep["challenger"]
    assert (ch["documents"], ch["triggers"], ch["agree"]) == (2, 30, 20)
    assert ch["agreementRate"] == round(20 / 30, 4)
    assert ch["matrix"] == {"help_offer|help_offer": 20, "help_offer|none": 6, "none|bonus_offer": 4}
    assert ch["differByRule"] == {"min_score": 6, "cooldown": 2, "ranking": 1, "other": 1}
    assert ch["versions"] == {"m1|m2": 30}
    h = ch["types"]["help_offer"]
    assert (h["championPicks"], h["challengerPicks"], h["bothPicked"], h["scored"]) == (26, 20, 20, 30)
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    r = cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
    assert h["scoreCorrelation"] == pytest.approx(r, abs=1e-4)
    assert h["meanChampionScore"] == pytest.approx(mx, abs=1e-4)
    bonus = ch["types"]["bonus_offer"]
    assert bonus["challengerPicks"] == 4 and bonus["scoreCorrelation"] is None
    # shadow aggregates are not actions: nothing sent, nothing ignored
    assert rep["ignored"] == 0 and all(rep["types"][t]["sent"] == 0 for t in ACTION_TYPES)


# -- merging ------------------------------------------------------------------------------------------


def random_decisions(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.15:
            xs = [rng.random() for _ in range(rng.randint(1, 4))]
            ys = [rng.random() for _ in xs]
            choices = [*ACTION_TYPES, "none"]
            pairs = [(rng.choice(choices), rng.choice(choices)) for _ in xs]
            out.append(shadow(pairs, xs, ys, {rng.choice([*RULES, "ranking"]): rng.randint(0, 2)}))
        else:
            atype = rng.choice(ACTION_TYPES)
            t0 = summary.day_start_ms(DAY) + rng.randint(0, 86_399_999)
            out.append(decision(atype, rng.choice(("treated", "holdout")), rng.random() < 0.4, t0))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 150), st.integers(1, 6))
def test_merging_outcome_and_shadow_partials_equals_one_pass(seed: int, n: int, parts: int) -> None:
    rng = random.Random(seed)
    docs = random_decisions(rng, n)
    as_of = summary.day_start_ms(DAY) + rng.randint(0, 4 * 86_400_000)
    cuts = sorted(rng.randint(0, n) for _ in range(parts - 1))
    pieces = [docs[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    partials = [summary.aggregate(p, as_of) for p in pieces]
    rng.shuffle(partials)
    merged = summary.merge_all(partials)
    whole = summary.aggregate(docs, as_of)
    assert merged == whole
    assert json.loads(json.dumps(merged)) == merged  # integers and strings only: the JSON is exact
    assert summary.report(merged) == summary.report(whole)


def test_partials_of_the_previous_schema_merge_as_zeros() -> None:
    """An hour document written before issue 18 (no groups, no shadow block, a min_score key)."""
    old = summary.aggregate([decision()])
    for t in ACTION_TYPES:
        for key in ("treated", "holdout", "untracked"):
            del old["types"][t][key]
        old["types"][t]["rejections"]["min_score"] = 0
    del old["shadow"]
    merged = summary.merge(old, summary.aggregate([decision(group="holdout")]))
    assert merged["types"]["break_suggestion"]["holdout"] == [1, 0, 0]
    assert merged["types"]["break_suggestion"]["treated"] == [0, 0, 0]


def test_min_score_is_not_listed_as_a_rule_of_suppressed_decisions() -> None:
    partial = summary.aggregate([decision()])
    assert "min_score" not in partial["types"]["break_suggestion"]["rejections"]
    assert set(partial["types"]["break_suggestion"]["rejections"]) == {
        *(r for r in RULES if r != "min_score"),
        "other",
    }


def test_a_partial_stays_small_with_outcomes_and_shadow() -> None:
    rng = random.Random(2)
    small = json.dumps(summary.aggregate(random_decisions(rng, 10), T0))
    big = json.dumps(summary.aggregate(random_decisions(rng, 5000), T0))
    assert len(big) < len(small) * 1.5 and len(big) < 12_000


# -- days, runs, finality --------------------------------------------------------------------------

TTL = 7 * 86_400
NOW = summary.day_start_ms("2030-03-20") + 30 * 60_000  # the 20th, 00:30 UTC: the timer's time


def test_today_the_future_and_expired_days_are_refused_with_a_reason() -> None:
    assert summary.check_summarisable("2030-03-19", NOW, TTL) == "2030-03-19"
    # the 14th's first documents live until the 21st
    assert summary.check_summarisable("2030-03-14", NOW, TTL) == "2030-03-14"
    with pytest.raises(summary.BadDay, match="is today"):
        summary.check_summarisable("2030-03-20", NOW, TTL)
    with pytest.raises(summary.BadDay, match="in the future"):
        summary.check_summarisable("2030-03-21", NOW, TTL)
    with pytest.raises(summary.BadDay, match="ACTION_TTL_SECONDS 604800"):
        summary.check_summarisable("2030-03-13", NOW, TTL)
    with pytest.raises(summary.BadDay, match="YYYY-MM-DD"):
        summary.check_summarisable("2030-3-13", NOW, TTL)
    # a shorter TTL keeps fewer days
    with pytest.raises(summary.BadDay, match="older than"):
        summary.check_summarisable("2030-03-18", NOW, 86_400)


def test_a_day_is_final_once_its_longest_window_and_the_grace_are_over() -> None:
    assert summary.final_at_ms("2030-03-16") == summary.day_start_ms("2030-03-20") + summary.OUTCOME_GRACE_MS
    assert summary.is_final("2030-03-16", NOW) and not summary.is_final("2030-03-17", NOW)
    index = summary.index_document("2030-03-16", summary.empty(), [], [], "run-1", "x", NOW)
    assert index["final"] is True and index["run"] == "run-1" and index["asOf"] == "2030-03-20T00:30:00.000Z"
    assert summary.index_document("2030-03-17", summary.empty(), [], [], "r", "x", NOW)["final"] is False
    assert summary.index_document("2030-03-17", summary.empty(), [], [], "r", "x")["final"] is False


def test_the_timer_resummarises_the_kept_days_without_a_final_summary() -> None:
    kept = summary.kept_days(NOW, TTL)
    assert kept == [f"2030-03-{d}" for d in (19, 18, 17, 16, 15, 14)]
    # steady state: 15th and 14th final long ago, 16th..18th summarised before their windows closed
    finals: dict[str, bool | None] = {
        "2030-03-18": False,
        "2030-03-17": False,
        "2030-03-16": False,
        "2030-03-15": True,
        "2030-03-14": True,
    }
    assert summary.days_due(NOW, TTL, finals) == ["2030-03-19", "2030-03-18", "2030-03-17", "2030-03-16"]
    # after this run the 16th is final (its windows closed at 00:10): tomorrow it is not due
    finals.update({"2030-03-16": summary.is_final("2030-03-16", NOW)})
    assert "2030-03-16" not in summary.days_due(NOW + 86_400_000, TTL, finals)
    # a day missed while the app was down is caught up while the TTL keeps it
    assert "2030-03-15" in summary.days_due(NOW, TTL, {**finals, "2030-03-15": None})


def test_run_ids_on_parts_and_exports_tell_a_mixed_day_apart() -> None:
    part = summary.part_document(DAY, 3, summary.empty(), "x.jsonl", "at", "run-2")
    assert part["run"] == "run-2"
    assert summary.export_header(["a"], DAY, 3, "run-2")["run"] == "run-2"
    index = summary.index_document(DAY, summary.empty(), [], [], "run-1", "at")
    old = summary.part_document(DAY, 4, summary.empty(), None, "at", "run-1")
    assert summary.mixed_parts(index, [part, old]) == [summary.part_id(DAY, 3)]
    assert summary.mixed_parts(index, [old]) == []
