"""What-if replay (issue 18, item 3) against a real devhost run.

The crucial check: replaying a run's own Event Hubs log with the baseline configuration reproduces
exactly the documents the pipeline wrote to Cosmos (decisions sent and held out: id, type, status,
score, outcome; suppressed aggregates: id, type, rule, count; the challenger's aggregates). Then
candidates that change something known (a type disabled, a higher min_score, a holdout of one,
another model) must change exactly that; bad input is refused with its line number; the command's
exit codes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost import whatif, whatif_report
from devhost.cli import main
from devhost.functions_host.settings import load_local_settings
from devhost.host import Host, RunConfig
from shared import summary
from shared.config import CosmosSettings
from shared.features import FEATURES
from shared.model import get_challenger, get_model
from shared.store import ActionStore, ensure_containers, make_client
from tests.challenger_model import break_happy
from tests.conftest import LOCAL_KEY
from tests.e2e.test_devhost_e2e import settings_file

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(300)]

HOUR_MS = 3_600_000
# A fixed window in the past (whole hours): the same events whatever today is.
START_MS = (int(time.time() * 1000) // HOUR_MS - 4 * 24) * HOUR_MS
PLAYERS, SEED = 80, 11


class Run:
    def __init__(self, root: Path, cosmos: CosmosSettings, settings: Path) -> None:
        self.root, self.cosmos, self.settings = root, cosmos, settings
        self.state_dir = root / "state"
        self.docs: list[dict[str, Any]] = []

    def values(self) -> dict[str, str]:
        return load_local_settings(self.settings)


def record(
    root: Path, cosmos: CosmosSettings, players: int, redeliver_share: float = 0.0, **values: str
) -> tuple[Run, dict[str, Any]]:
    """A real devhost run with these settings; its documents read from Cosmos."""
    client = make_client(cosmos)
    ensure_containers(client, cosmos)
    run = Run(root, cosmos, settings_file(root, cosmos, **values))
    cfg = RunConfig(
        players=players,
        duration_s=2 * 86_400.0,
        seed=SEED,
        start_ms=START_MS,
        partitions=4,
        redeliver_share=redeliver_share,
        state_dir=run.state_dir,
        fresh=True,
        report_dir=None,
        settings_path=run.settings,
        progress=False,
    )
    result = Host(cfg).run()
    run.docs = list(
        ActionStore(cosmos).actions.query_items("SELECT * FROM c", enable_cross_partition_query=True)
    )
    return run, result.summary


@pytest.fixture(scope="module")
def recorded(cosmos_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One real devhost run (a challenger in shadow, a holdout of bonus and help offers), its
    documents read from Cosmos."""
    root = tmp_path_factory.mktemp("whatif")
    cosmos = CosmosSettings(endpoint=cosmos_endpoint, database=f"w{uuid.uuid4().hex[:12]}", key=LOCAL_KEY)
    challenger = break_happy(root / "challenger")
    run, _ = record(
        root,
        cosmos,
        PLAYERS,
        HOLDOUT_SHARE="bonus_offer=0.3,help_offer=0.1",
        CHALLENGER_MODEL=str(challenger),
    )
    try:
        yield run
    finally:
        make_client(cosmos).delete_database(cosmos.database)


def _key(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal, per kind of document."""
    if doc.get("kind") == "shadow":
        return (
            "shadow",
            doc["count"],
            doc["agree"],
            sorted(doc["matrix"].items()),
            sorted(doc["differByRule"].items()),
        )
    if doc["status"] == "suppressed":
        return ("suppressed", doc["type"], doc["rejectedBy"], doc["count"], doc["day"], doc["hour"])
    outcome = doc.get("outcome") or {}
    return (
        doc["status"],
        doc["type"],
        doc["score"],
        doc["triggerEventId"],
        doc.get("group"),
        outcome.get("windowEnd"),
        outcome.get("metAt"),
        doc["modelVersion"],
    )


def _sides(run: Run, *candidates: whatif.Config) -> list[whatif.Side]:
    rules, challenger_path = whatif.baseline_rules(run.values())
    base = whatif.Config(rules, get_model(), get_challenger(challenger_path))
    sides = [whatif.Side(base), *(whatif.Side(c) for c in candidates)]
    recorded, _ = whatif.read_devhost_log(run.state_dir)
    whatif.replay(recorded, sides)
    return sides


def test_the_baseline_replay_reproduces_exactly_the_documents_the_pipeline_wrote(recorded: Run) -> None:
    written = {d["id"]: _key(d) for d in recorded.docs}
    kinds = {k[0] for k in written.values()}
    assert len(written) > 100
    # The run exercised every kind of document: sent, held out, suppressed, the challenger's.
    assert {"pending", "holdout", "suppressed", "shadow"} <= kinds, kinds
    assert any(d.get("outcome", {}).get("metAt") for d in recorded.docs)  # outcomes were met too
    [base] = _sides(recorded)
    replayed = {i: _key(d) for i, d in base.store.docs.items()}
    assert replayed == written


def test_redelivered_batches_change_nothing_when_signals_keep_the_log_order(
    cosmos_settings: CosmosSettings, tmp_path: Path
) -> None:
    """At-least-once: a third of the trigger batches are delivered again (a tail of each). With the
    client signal path each invocation enqueues its signals before the next one starts, so the
    entities see the log's order with duplicates after the originals: they dedupe them, and the
    replay, which reads every event once, still gives exactly the same documents. (With the
    orchestration path a redelivered tail's delivery may overtake the original's: the events it
    overtakes arrive late and trigger nothing, an order the log does not record; see
    docs/dashboard.md, "The what-if report".)"""
    run, summary_ = record(tmp_path, cosmos_settings, 40, redeliver_share=0.3, SIGNAL_PATH="client")
    assert summary_["host"]["redelivered_events"] > 100
    written = {d["id"]: _key(d) for d in run.docs}
    assert len(written) > 30
    [base] = _sides(run)
    assert {i: _key(d) for i, d in base.store.docs.items()} == written


def test_without_settings_the_replay_takes_the_decision_settings_the_run_recorded(
    recorded: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --summary` sets its own holdout share and this run a challenger: a replay of its state
    with no --settings must still be the run's configuration, not the app's defaults."""
    kept = whatif.recorded_settings(recorded.state_dir)
    assert kept["HOLDOUT_SHARE"] == "bonus_offer=0.3,help_offer=0.1" and kept["CHALLENGER_MODEL"]
    monkeypatch.chdir(tmp_path)  # no ./local.settings.json here
    code = main(
        ["whatif", "--state-dir", str(recorded.state_dir), "--report-dir", str(tmp_path), "--fail-on-change"]
    )
    assert code == 0, capsys.readouterr().err


def test_the_command_on_the_recorded_run_reports_no_change_for_the_current_configuration(
    recorded: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["whatif", "--state-dir", str(recorded.state_dir), "--settings", str(recorded.settings)]
    code = main([*args, "--report-dir", str(tmp_path), "--fail-on-change"])
    assert code == 0, capsys.readouterr().err
    [path] = tmp_path.glob("whatif-*.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    assert (tmp_path / path.name.replace(".json", ".png")).stat().st_size > 10_000
    sent = sum(1 for d in recorded.docs if d["status"] == "pending")
    assert sum(report["totals"]["baseline"]["sent"].values()) == sent
    assert report["totals"]["baseline"] == report["totals"]["candidate"]
    assert not whatif.changed(report) and report["unchanged"] == sent + sum(
        1 for d in recorded.docs if d["status"] == "holdout"
    )
    # A candidate that changes something: exit 3 with --fail-on-change, 0 without.
    assert main([*args, "--no-report", "--rule", "disabled=help_offer", "--fail-on-change"]) == 3
    assert main([*args, "--no-report", "--rule", "disabled=help_offer"]) == 0


def _decisions(side: whatif.Side, atype: str) -> dict[str, dict[str, Any]]:
    return {i: d for i, d in side.decisions().items() if d["type"] == atype}


def test_disabling_a_type_removes_exactly_its_decisions_and_nothing_else_but_what_follows(
    recorded: Run,
) -> None:
    rules, _ = whatif.baseline_rules(recorded.values())
    wide = whatif.apply_overrides(rules, ["daily_cap=1000"])[
        0
    ]  # no shared cap: types interact by ranking only
    cand_rules = whatif.apply_overrides(wide, ["disabled=bonus_offer"])[0]
    base_cfg = whatif.Config(wide, get_model())
    [base, cand] = [whatif.Side(base_cfg), whatif.Side(whatif.Config(cand_rules, get_model()))]
    whatif.replay(whatif.read_devhost_log(recorded.state_dir)[0], [base, cand])
    report = whatif.compare(base, cand)
    bonus = _decisions(base, "bonus_offer")
    assert len(bonus) >= 3 and _decisions(cand, "bonus_offer") == {}
    assert report["removed"]["bonus_offer"]["total"] == len(bonus)
    assert report["removed"]["bonus_offer"]["byRule"] == {"kill_switch": len(bonus)}
    # Other types change only where a bonus offer was picked first ("ranking"), and by the cooldown
    # those new decisions start.
    freed = {(d["playerId"], d["triggerEventId"]) for d in bonus.values()}
    for t in ("break_suggestion", "help_offer"):
        assert set(report["added"][t]["byRule"]) <= {"ranking"}
        assert set(report["removed"][t]["byRule"]) <= {"cooldown"}
        for i, d in cand.decisions().items():
            if d["type"] == t and i not in base.decisions():
                assert (d["playerId"], d["triggerEventId"]) in freed
    assert (
        report["rejections"]["kill_switch"]["candidate"]
        > 0
        == report["rejections"].get("kill_switch", {"baseline": 0})["baseline"]
    )


def test_a_higher_min_score_removes_every_decision_under_it(recorded: Run) -> None:
    rules, _ = whatif.baseline_rules(recorded.values())
    cand_rules = whatif.apply_overrides(rules, ["min_score.break_suggestion=0.8"])[0]
    base_cfg = whatif.Config(rules, get_model())
    base, cand = whatif.Side(base_cfg), whatif.Side(whatif.Config(cand_rules, get_model()))
    whatif.replay(whatif.read_devhost_log(recorded.state_dir)[0], [base, cand])
    before, after = _decisions(base, "break_suggestion"), _decisions(cand, "break_suggestion")
    under = {i for i, d in before.items() if d["score"] < 0.8}
    assert under and len(under) < len(before)  # the run has break suggestions on both sides of 0.8
    assert all(d["score"] >= 0.8 for d in after.values())
    assert under.isdisjoint(after)
    report = whatif.compare(base, cand)
    # Those under 0.8 go by min_score (or another type ranked first at that trigger); any other
    # change of break suggestions follows from the cooldowns and caps they no longer start.
    removed_under = {s["id"] for s in report["samples"]["removed"] if s["id"] in under}
    assert removed_under <= under
    assert set(report["removed"]["break_suggestion"]["byRule"]) <= {
        "min_score",
        "ranking",
        "cooldown",
        "daily_cap",
    }
    assert report["removed"]["break_suggestion"]["byRule"].get("min_score", 0) >= 1
    for i in set(after) - set(before):
        assert after[i]["score"] >= 0.8
    assert set(report["added"]["break_suggestion"]["byRule"]) <= {"cooldown", "daily_cap", "ranking"}


def test_a_holdout_of_one_turns_every_sent_decision_of_the_type_into_a_holdout(recorded: Run) -> None:
    rules, _ = whatif.baseline_rules(recorded.values())
    import dataclasses

    cand_rules = dataclasses.replace(rules, holdout_share={**rules.holdout_share, "help_offer": 1.0})
    base, cand = (
        whatif.Side(whatif.Config(rules, get_model())),
        whatif.Side(whatif.Config(cand_rules, get_model())),
    )
    whatif.replay(whatif.read_devhost_log(recorded.state_dir)[0], [base, cand])
    report = whatif.compare(base, cand)
    sent = [d for d in _decisions(base, "help_offer").values() if d["status"] == "pending"]
    assert sent and report["statusChanged"]["help_offer"] == {"toHoldout": len(sent), "toSent": 0}
    # A holdout decision counts for the cooldown and the cap like a sent one: nothing else moves.
    assert all(report[k][t]["total"] == 0 for k in ("added", "removed") for t in report["added"])


def test_a_candidate_model_shifts_the_scores_and_names_its_version(recorded: Run, tmp_path: Path) -> None:
    model = break_happy(tmp_path / "cand")
    report = whatif.run(state_dir=recorded.state_dir, settings=recorded.values(), model=model)
    assert report["candidate"]["modelVersion"] == "challenger-break-happy"
    b = report["scores"]["break_suggestion"]
    assert b["baseline"]["n"] == b["candidate"]["n"] > 100
    assert b["shift"]["p50"] > 0.2  # it suggests breaks far more
    assert report["totals"]["candidate"]["sent"]["bonus_offer"] == 0  # and never a bonus
    assert report["added"]["break_suggestion"]["total"] > 0
    text = whatif_report.render(report)
    assert "challenger-break-happy" in text and "break_suggestion" in text


def test_the_retraining_export_rows_are_rescored_to_their_recorded_score(
    recorded: Run, tmp_path: Path
) -> None:
    """A day of the export written by the summary's own functions from the run's documents: the
    baseline model gives each row its recorded score; disabling a type changes exactly its rows."""
    day = summary.day_from_ms(START_MS + 86_400_000)
    folder = tmp_path / day
    folder.mkdir()
    rows = 0
    for hour in range(24):
        lines = [json.dumps(summary.export_header(list(FEATURES), day, hour))]
        for d in recorded.docs:
            if d.get("day") == day and d.get("hour") == hour and (row := summary.export_row(d)) is not None:
                lines.append(json.dumps(row))
        rows += len(lines) - 1
        (folder / f"hour-{hour:02d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert rows > 10
    report = whatif.run(export=folder, settings=recorded.values(), rules=["disabled=help_offer"])
    ex = report["export"]
    assert ex["rows"] == rows and ex["recordedScoreMismatches"] == 0
    assert ex["types"]["help_offer"]["kept"] == 0 < ex["types"]["help_offer"]["rows"]
    assert set(ex["types"]["help_offer"]["byRule"]) <= {"kill_switch"}
    for t in ("break_suggestion", "bonus_offer"):
        assert ex["types"][t]["changedTo"] == {}
    assert whatif.changed(report)


def _index(run: Run) -> dict[str, Any]:
    """The summary index of the run's two days, made by the summary's own functions, as of a week
    after them (every outcome window closed)."""
    docs = [d for d in run.docs if d.get("day")]
    as_of = START_MS + 9 * 86_400_000
    day = summary.day_from_ms(START_MS + 86_400_000)
    return summary.index_document(day, summary.aggregate(docs, as_of), [], [], "run-1", "now", as_of)


def _check_effect(report: dict[str, Any], index: dict[str, Any]) -> None:
    eff = report["effect"]
    measured = {
        t: o["outcome"] for t, o in index["summary"]["types"].items() if o["outcome"]["uplift"] is not None
    }
    assert eff["available"] and set(eff["types"]) == set(measured) and measured
    totals = report["totals"]
    for t, e in eff["types"].items():
        delta = totals["candidate"]["sent"][t] - totals["baseline"]["sent"][t]
        u, (low, high) = measured[t]["uplift"], measured[t]["ci95"]
        assert e["sentChange"] == delta and e["uplift"] == u
        assert e["outcomesChange"] == pytest.approx(delta * u, abs=1e-3)
        ends = sorted((delta * low, delta * high))
        assert e["outcomesChangeInterval"] == [pytest.approx(x, abs=1e-3) for x in ends]
    assert eff["types"].get("help_offer", {"sentChange": -1})["sentChange"] < 0


def test_the_estimated_effect_takes_the_uplift_the_daily_summary_measured(
    recorded: Run, tmp_path: Path
) -> None:
    """From the file ``run --summary`` writes, and from the index in the summaries container."""
    from shared import summary_store

    index = _index(recorded)
    path = tmp_path / f"summary-{index['day']}.json"
    path.write_text(
        json.dumps({"day": index["day"], "runtimeStatus": "Completed", "index": index}), encoding="utf-8"
    )
    args: dict[str, Any] = {
        "state_dir": recorded.state_dir,
        "settings": recorded.values(),
        "rules": ["disabled=help_offer"],
    }
    from_file = whatif.run(**args, summary_json=path)
    _check_effect(from_file, index)
    assert from_file["effect"]["source"] == str(path)

    summary_store.summaries(recorded.cosmos).upsert_item(index)
    from_cosmos = whatif.run(**args, summary_day=index["day"])
    _check_effect(from_cosmos, index)
    assert from_cosmos["effect"]["day"] == index["day"]
    with pytest.raises(whatif.WhatIfError, match="no summary index for that day"):
        whatif.run(**args, summary_day="2020-01-01")
    none = whatif.run(**args)
    assert none["effect"]["available"] is False and "no daily summary" in none["effect"]["reason"]
