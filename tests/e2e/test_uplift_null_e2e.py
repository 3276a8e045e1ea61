"""The randomized holdout with no true effect finds none, and the champion as its own challenger
agrees with itself (issue 18).

One run (tests/e2e/uplift_run.py): 200 players over three UTC days, half of every type held out,
every true effect 0 (the players still answer; no action causes its outcome), CHALLENGER_MODEL set
to the champion's own file. The summary's 95% interval holds 0 for every type, over the last day
and the three days merged; the challenger block agrees on every trigger with a score correlation
of 1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import summary
from shared.model import DEFAULT_MODEL_PATH
from shared.policy import ACTION_TYPES
from tests.e2e import uplift_run
from tests.e2e.uplift_run import UpliftRun

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(300)]

PLAYERS, SEED = 200, 31
NO_EFFECT = dict.fromkeys(ACTION_TYPES, 0.0)


@pytest.fixture(scope="module")
def r(cosmos_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpliftRun]:
    yield from uplift_run.run(
        tmp_path_factory.mktemp("null"),
        cosmos_endpoint,
        PLAYERS,
        SEED,
        NO_EFFECT,
        CHALLENGER_MODEL=str(DEFAULT_MODEL_PATH),
    )


def test_without_a_true_effect_the_interval_holds_zero(r: UpliftRun) -> None:
    missed, extra = r.mismatches()
    assert extra == [], r.describe(extra)
    assert len(missed) <= len(r.decisions) // 100, r.describe(missed)
    assert len(r.decisions) > 200
    assert not [d for d in r.decisions if str(d["outcome"].get("eventId", "")).startswith("outcome-")]
    day = r.index["day"]
    day_est = {t: r.index["summary"]["types"][t]["outcome"] for t in ACTION_TYPES}
    merged = r.estimate(r.decisions)
    print()
    print(uplift_run.effect_table(f"  no true effect, {day}", r.truth(r.of_day(day)), day_est))
    print(uplift_run.effect_table("  no true effect, the three days merged", r.truth(r.decisions), merged))
    for est in (day_est, merged):
        for t in ACTION_TYPES:
            assert est[t]["treated"]["n"] > 10 and est[t]["holdout"]["n"] > 10, (t, est[t])
            low, high = est[t]["ci95"]
            assert low <= 0.0 <= high, (t, est[t])
    assert set(r.truth(r.decisions).values()) == {0.0}


def test_the_champion_as_challenger_agrees_with_itself(r: UpliftRun) -> None:
    index = r.index
    ch = index["summary"]["challenger"]
    shadows = [d for d in r.docs if d.get("kind") == "shadow" and d.get("day") == index["day"]]
    assert ch["documents"] == len(shadows) > 0
    assert ch["triggers"] == sum(d["count"] for d in shadows) == ch["agree"]
    assert ch["agreementRate"] == 1 and ch["differByRule"] == {}
    assert all(k.split("|")[0] == k.split("|")[1] for k in ch["matrix"])
    for t in ACTION_TYPES:
        x = ch["types"][t]
        assert x["championPicks"] == x["challengerPicks"] == x["bothPicked"]
        assert x["scoreCorrelation"] == 1.0 and x["meanChampionScore"] == x["meanChallengerScore"]
    # the champion's picks on the day are its decisions, sent and held out
    decided = [d for d in r.of_day(index["day"])]
    for t in ACTION_TYPES:
        assert ch["types"][t]["championPicks"] == sum(1 for d in decided if d["type"] == t)
    assert summary.report(summary.aggregate(shadows))["challenger"] == ch
