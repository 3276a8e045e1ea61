"""The devhost CLI refuses bad options with one line and exit code 2, and documents every option."""

from __future__ import annotations

import pytest

from devhost.cli import parser


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
