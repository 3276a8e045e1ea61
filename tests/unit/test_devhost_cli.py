"""The devhost CLI refuses bad options with one line and exit code 2, and documents every option."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from devhost.cli import parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["--partitions", "0"],
        ["--entity-workers", "0"],
        ["--players", "-5"],
        ["--players", "x"],
        ["--rate", "-5"],
        ["--bad-share", "2"],
        ["--redeliver-share", "-0.1"],
        ["--duration", "0"],
        ["--duration", "ten minutes"],
        ["--max-lag", "0"],
        ["--retry-delay-scale", "0"],
    ],
)
def test_bad_options_are_one_line_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["run", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and argv[0] in err, err


@pytest.mark.parametrize("duration", ["600", "10m", "1h", "1d", "2.5h"])
def test_durations(duration: str) -> None:
    assert parser().parse_args(["run", "--duration", duration]).duration > 0


def test_every_option_has_help_text() -> None:
    p = parser()
    subparsers = next(a for a in p._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest} has no help text"


# -- the first hour (issue 20, item 3) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--source", "jsonl"], "--file"),
        (["--source", "jsonl", "--file", "no-such-file.jsonl"], "no-such-file.jsonl"),
        (["--file", "examples/events.jsonl"], "--source jsonl"),
        (["--settings", "no-such-settings.json"], "no-such-settings.json"),
        (["--state-dir", "README.md"], "--state-dir"),
        (["--summary-day", "2030-01-01"], "--summary"),
        (["--transport", "carrier-pigeon"], "--transport"),
        (["--start", "2030-01-01T00:00:00"], "time zone"),
    ],
)
def test_every_bad_run_input_is_one_line_and_exit_2(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``main``, as ``python -m devhost run ...`` runs it: no traceback, nothing started."""
    from devhost import cli

    monkeypatch.chdir(ROOT)  # README.md and examples/ as a user at the repository root has them
    monkeypatch.setattr(cli, "_interrupt", None)  # main must not get as far as the signal handler
    code = _exit_code(lambda: cli.main(["run", *argv]))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.strip().count("\n") == 0 and names in err and "Traceback" not in err, err


def _exit_code(call: Any) -> int:
    try:
        return int(call())
    except SystemExit as exc:
        return int(exc.code or 0)


def test_run_help_shows_the_defaults_and_the_dashboard(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for shown in ("--players PLAYERS synthetic: number of players (default: 200)", "(default: 1d)"):
        assert shown in text
    assert "Event Hubs partitions (synthetic, jsonl) (default: 32)" in text
    options = text[text.index("options:") :]
    serve = options[options.index("--serve") : options.index("--redeliver-share REDELIVER_SHARE")]
    assert "dashboard" in serve
    assert "(default: False)" not in text and "(default: None)" not in text  # flags say nothing
    assert parser().parse_args(["run"]).duration == 86_400.0  # "1d" went through the type


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_off_a_terminal_is_a_plain_line_every_few_seconds() -> None:
    from devhost.pipeline import PlainProgress, _progress

    log = io.StringIO()  # not a TTY, like `make run > run.log`
    assert isinstance(_progress(True, 1000, 0, log), PlainProgress)
    assert _progress(False, 1000, 0, log) is None
    clock = _Clock()
    bar = PlainProgress(1000, 0, log, every_s=10, clock=clock)
    for step in range(1, 101):  # 25 s of quarter-second refreshes, as the sampler does
        clock.t += 0.25
        bar.n = step * 10
        bar.set_postfix(queued=3, ops=step, refresh=False)
        bar.refresh()
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3, lines  # at 10 s, at 20 s, and the closing one
    assert lines[-1] == "events: 1000/1000 [100%, 25s] queued=3, ops=100"
    assert lines[0] == "events: 400/1000 [40%, 10s] queued=3, ops=40"


def test_progress_on_a_terminal_is_the_bar() -> None:
    from devhost.pipeline import _progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = _progress(True, 10, 0, Tty())
    assert type(bar).__name__ == "tqdm"
    bar.close()


def _summary(deadletters_file: str | None) -> dict[str, Any]:
    return {
        "pipeline": {
            "events_in": 10,
            "dropped": {},
            "dead_lettered": {},
            "signals": 1,
            "entity_operations": 1,
            "duplicates": 0,
            "scored": 1,
            "actions": {},
            "rejections": {},
            "latency_ms": {"p50": None, "p99": None, "count": 0},
            "write_failures": 0,
        },
        "host": {"entity_batches": 1, "batches": 1, "retries": 0, "failed_batches": 0},
        "events_per_second": 10.0,
        "events_processed": 10,
        "wall_seconds": 1.0,
        "deadletters_file": deadletters_file,
    }


def test_dead_letters_are_pointed_to_only_when_there_are_some(tmp_path: Path) -> None:
    from devhost import report

    empty, full = tmp_path / "deadletters-a.jsonl", tmp_path / "deadletters-b.jsonl"
    empty.write_text("")
    full.write_text('{"reason": "malformed"}\n')
    assert "dead letters listed in" not in report.table(_summary(str(empty)))
    assert "dead letters listed in" not in report.table(_summary(None))
    line = next(x for x in report.table(_summary(str(full))).splitlines() if "dead letters listed in" in x)
    assert line.split()[-1] == str(full)


def _span(name: str, span_id: int, parent: int | None, attrs: dict[str, Any], start: int) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    def ctx(sid: int) -> SpanContext:
        return SpanContext(trace_id=7, span_id=sid, is_remote=False, trace_flags=TraceFlags(1))

    return ReadableSpan(
        name=name,
        context=ctx(span_id),
        parent=ctx(parent) if parent is not None else None,
        attributes=attrs,
        start_time=start,
        end_time=start + 1_000_000,
    )


RULES = ("cooldown", "daily_cap")  # a sequence attribute, as the SDK keeps it: a tuple


def test_the_trace_names_a_suppressed_decision_and_its_rules() -> None:
    from devhost import traces

    spans = [
        _span("ingest.event", 2, 1, {"cloudevents.event_type": "round.ended"}, 1),
        _span(
            "entity.event",
            3,
            2,
            {"pi.policy.outcome": "none", "pi.policy.rejected_by": ("cooldown", "daily_cap")},
            2,
        ),
        _span("cosmos.create action", 4, 3, {"pi.action.id": "sup-0123"}, 3),
    ]
    chosen = traces.action_trace(spans)
    assert chosen == spans  # no action in the run: the suppressed decision's trace is shown
    text = traces.render(chosen)
    assert "cosmos.create suppressed" in text and "suppressed=sup-0123" in text
    assert "cosmos.create action" not in text and "action=" not in text
    assert "rejected_by=cooldown,daily_cap" in text and "(" not in text.split("rejected_by=")[1].split()[0]
    # a trace that ends in an action is preferred, and shown as one
    action = [
        _span("ingest.event", 12, 11, {}, 1),
        _span("entity.event", 13, 12, {"pi.policy.outcome": "break_suggestion"}, 2),
        _span("cosmos.create action", 14, 13, {"pi.action.id": "act-77"}, 3),
    ]
    for s in action:
        s._context = s.context.__class__(8, s.context.span_id, False, s.context.trace_flags)
    picked = traces.action_trace(spans + action)
    assert [s.context.trace_id for s in picked] == [8, 8, 8]
    assert "cosmos.create action" in traces.render(picked) and "action=act-77" in traces.render(picked)
