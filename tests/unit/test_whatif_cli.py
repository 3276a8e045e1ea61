"""``python -m devhost whatif`` without a run: the README's example file, rule overrides, bad input
(clear errors with line numbers) and the exit codes. The replay against a real devhost run, and
the baseline reproducing the pipeline's documents exactly, are in tests/e2e/test_whatif.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost import whatif
from devhost.cli import main
from shared.features import FEATURES
from shared.policy import Rules
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "events.jsonl"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["whatif", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_readme_example_replays_the_example_file_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "--events", str(EXAMPLE), "--rule", "min_score=0.1", "--report-dir", str(tmp_path)
    )
    assert code == 0, err
    [path] = tmp_path.glob("whatif-*.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    assert Path(report["png"]).stat().st_size > 10_000
    src = report["source"]
    # The file's deliberately bad lines are dead-lettered, as the app would, each with its line.
    assert src["kind"] == "jsonl" and src["messages"] == 25 and src["deadLettered"] == 5
    assert [d["line"] for d in src["deadLetters"]] == [21, 22, 23, 24, 25]
    # The baseline sends nothing on this small file; a min_score of 0.1 lets two decisions through,
    # each named by the rule that no longer stops it.
    assert sum(report["totals"]["baseline"]["sent"].values()) == 0
    added = {t: a for t, a in report["added"].items() if a["total"]}
    assert added and all(a["byRule"] == {"min_score": a["total"]} for a in added.values())
    assert "min_score" in out and str(path) in out
    assert report["effect"]["available"] is False


def test_the_same_replay_gives_the_same_report(tmp_path: Path) -> None:
    a = whatif.run(events=EXAMPLE, rules=["min_score=0.1"])
    b = whatif.run(events=EXAMPLE, rules=["min_score=0.1"])
    for r in (a, b):
        r.pop("createdAt")
    assert a == b


def test_rule_overrides_by_name() -> None:
    base = Rules()
    rules, applied = whatif.apply_overrides(
        base,
        ["min_score=0.7", "min_score.help_offer=0.6", "daily_cap=2", "disabled=bonus_offer,help_offer",
         "cooldown_ms.break_suggestion=60000", "holdout_share.bonus_offer=0.5"],
    )  # fmt: skip
    assert rules.min_score == {"break_suggestion": 0.7, "help_offer": 0.6, "bonus_offer": 0.7}
    assert rules.daily_cap == 2 and isinstance(rules.daily_cap, int)
    assert rules.disabled == frozenset({"bonus_offer", "help_offer"})
    assert rules.cooldown_ms["break_suggestion"] == 60000 and rules.cooldown_ms["help_offer"] == 3_600_000
    assert rules.holdout_share == {"bonus_offer": 0.5}
    assert whatif.apply_overrides(base, ["harm_loss_streak=8.5"])[0].harm_loss_streak == 8.5  # a float field
    assert applied[2] == "daily_cap=2" and base == Rules()  # the base is left as it was
    keyed, applied = whatif.apply_overrides(base, ["holdout_key=season-2-secret"])
    assert keyed.holdout_key == "season-2-secret" and applied == ["holdout_key=(redacted)"]


@pytest.mark.parametrize(
    "rule,says",
    [
        ("bogus=1", "--rule bogus: unknown rule; known: min_score"),
        ("min_score.jackpot=0.5", "unknown action type 'jackpot'"),
        ("min_score.help_offer=1.5", "must be between 0 and 1"),
        ("daily_cap=lots", "not a number: 'lots'"),
        ("daily_cap=-1", "must be 0 or more"),
        ("daily_cap=2.5", "must be a whole number"),
        ("daily_cap.help_offer=1", "daily_cap is not set per action type"),
        ("disabled=jackpot", "unknown action types ['jackpot']"),
        ("min_score", "expected NAME=VALUE"),
        ("holdout_key=" + "k" * 65, "at most 64 bytes"),
    ],
)
def test_a_bad_rule_is_exit_2_naming_it(capsys: pytest.CaptureFixture[str], rule: str, says: str) -> None:
    code, out, err = run(capsys, "--events", str(EXAMPLE), "--no-report", "--rule", rule)
    assert code == 2 and says in err and out == ""


def test_bad_files_are_exit_2_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('\n\nnot json\n{"specversion": "1.0"}\n', encoding="utf-8")
    code, _, err = run(capsys, "--events", str(garbage), "--no-report")
    assert code == 2 and "no valid event to replay" in err and "line 3: malformed_json" in err
    assert "line 4: missing_field" in err

    code, _, err = run(capsys, "--events", str(tmp_path / "absent.jsonl"), "--no-report")
    assert code == 2 and "absent.jsonl: no such file" in err

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    code, _, err = run(capsys, "--events", str(empty), "--no-report")
    assert code == 2 and "no events" in err

    header = json.dumps(
        {"schema": "pi-retraining-rows/1", "day": "2026-01-01", "hour": 0, "features": list(FEATURES)}
    )
    export = tmp_path / "hour-00.jsonl"
    export.write_text(header + "\n", encoding="utf-8")
    code, _, err = run(capsys, "--events", str(export), "--no-report")
    assert code == 2 and "use --export" in err

    row = json.dumps(
        {"action": "help_offer", "outcome": "none", "score": 0.7, "features": [0.0] * len(FEATURES)}
    )
    export.write_text(f"{header}\n{row}\n{{oops\n", encoding="utf-8")
    code, _, err = run(capsys, "--export", str(export), "--no-report")
    assert code == 2 and "hour-00.jsonl: line 3: not JSON" in err

    export.write_text(f"{header}\n{row}\n" + json.dumps({"action": "help_offer", "features": [1, 2]}) + "\n")
    code, _, err = run(capsys, "--export", str(export), "--no-report")
    assert code == 2 and f"line 3: a row needs an action type and {len(FEATURES)} features" in err

    export.write_text(row + "\n", encoding="utf-8")
    code, _, err = run(capsys, "--export", str(export), "--no-report")
    assert code == 2 and "line 1: not a retraining export header" in err

    code, _, err = run(capsys, "--state-dir", str(tmp_path), "--no-report")
    assert code == 2 and "no devhost run there" in err


def test_an_export_replays_through_the_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.model import get_model

    model = get_model()
    header = json.dumps(
        {"schema": "pi-retraining-rows/1", "day": "2026-01-01", "hour": 0, "features": list(FEATURES)}
    )
    vec = [0.0] * len(FEATURES)
    score = model.score_vector([0.0] * len(model.features))
    row = {"action": "help_offer", "outcome": "none", "score": score["help_offer"], "features": vec}
    rows = [json.dumps({**row, "modelVersion": model.version})]
    (tmp_path / "hour-00.jsonl").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    report = whatif.run(export=tmp_path, rules=["disabled=help_offer"])
    ex = report["export"]
    assert ex["rows"] == 1 and ex["recordedScoreMismatches"] == 0
    assert ex["types"]["help_offer"]["kept"] == 0 and ex["types"]["help_offer"]["rows"] == 1
    assert any("never add one" in n for n in report["notes"])


def test_a_bad_model_or_holdout_table_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not an onnx file")
    code, _, err = run(capsys, "--events", str(EXAMPLE), "--no-report", "--model", str(fake))
    assert code == 2 and "--model" in err and "model.onnx" in err
    code, _, err = run(capsys, "--events", str(EXAMPLE), "--no-report", "--holdout", "bonus_offer=2")
    assert code == 2 and "--holdout" in err and "[0, 1]" in err


def test_usage_errors_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as none:
        main(["whatif"])
    assert none.value.code == 2
    with pytest.raises(SystemExit) as both:
        main(["whatif", "--events", str(EXAMPLE), "--state-dir", "x"])
    assert both.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_fail_on_change_is_exit_3_only_when_a_decision_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--events", str(EXAMPLE), "--no-report", "--fail-on-change")[0] == 0
    code, out, _ = run(
        capsys, "--events", str(EXAMPLE), "--no-report", "--fail-on-change", "--rule", "min_score=0.1"
    )
    assert code == 3 and "added" in out


def test_a_log_row_with_unreadable_properties_is_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "devhost.sqlite")
    conn.execute("CREATE TABLE events (partition TEXT, seq INT, enqueued_ms INT, body BLOB, props TEXT)")
    conn.execute("CREATE TABLE failed_batches (partition TEXT, first_seq INTEGER, last_seq INTEGER)")
    conn.execute("INSERT INTO events VALUES ('0', 7, 1, x'7b7d', '{not json')")
    conn.commit()
    conn.close()
    with pytest.raises(whatif.WhatIfError, match="partition 0 sequence 7 are not readable"):
        whatif.read_devhost_log(tmp_path)
