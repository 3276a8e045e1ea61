"""`python -m devhost run --summary` holds out half of every type for the demo (devhost/cli.py,
devhost/run_config.py), and the host puts it into the app's settings unless they name their own."""

from __future__ import annotations

from typing import Any

import pytest

from devhost import cli, host
from devhost.run_config import DEMO_HOLDOUT_SHARE, RunConfig, RunError
from shared.config import parse_holdout_share


def configs(monkeypatch: pytest.MonkeyPatch, *argv: str) -> RunConfig:
    seen: list[RunConfig] = []

    def fake_host(cfg: RunConfig) -> Any:
        seen.append(cfg)
        raise RunError("stop here")

    monkeypatch.setattr(host, "Host", fake_host)
    assert cli.main(["run", *argv]) != 0
    return seen[0]


def test_the_summary_demo_holds_out_half_of_every_type(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_holdout_share(DEMO_HOLDOUT_SHARE) == {
        "break_suggestion": 0.5,
        "help_offer": 0.5,
        "bonus_offer": 0.5,
    }
    assert configs(monkeypatch, "--summary").holdout_share == DEMO_HOLDOUT_SHARE
    assert configs(monkeypatch).holdout_share is None  # make run: the app's default
    given = "bonus_offer=0.2"
    assert configs(monkeypatch, "--summary", "--holdout-share", given).holdout_share == given


def test_a_bad_holdout_share_is_refused_before_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--holdout-share", "bonus_offer=2"])
    assert "--holdout-share" in capsys.readouterr().err


def test_the_settings_own_holdout_share_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    class Server:
        def start(self, limit: float) -> str:
            return "http://127.0.0.1:1"

    class Azurite:
        def start_connection_string(self, limit: float) -> str:
            return "UseDevelopmentStorage=true"

    own = tmp_path / "local.settings.json"
    own.write_text('{"Values": {"HOLDOUT_SHARE": "help_offer=0.3"}}', encoding="utf-8")
    cfg = RunConfig(settings_path=own, holdout_share=DEMO_HOLDOUT_SHARE)
    settings, _ = host._settings(cfg, Server(), Azurite())  # type: ignore[arg-type]
    assert settings["HOLDOUT_SHARE"] == "help_offer=0.3"
    none = tmp_path / "none.json"
    none.write_text('{"Values": {}}', encoding="utf-8")
    settings, _ = host._settings(
        RunConfig(settings_path=none, holdout_share=DEMO_HOLDOUT_SHARE), Server(), Azurite()
    )  # type: ignore[arg-type]
    assert settings["HOLDOUT_SHARE"] == DEMO_HOLDOUT_SHARE
    settings, _ = host._settings(RunConfig(settings_path=none), Server(), Azurite())  # type: ignore[arg-type]
    assert "HOLDOUT_SHARE" not in settings
