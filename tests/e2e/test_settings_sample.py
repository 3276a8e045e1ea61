"""The README's Core Tools path: copying local.settings.sample.json must not break `make run`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devhost.functions_host.settings import ROOT
from devhost.host import Host, RunConfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_the_sample_settings_run_when_their_emulators_are_not_running(tmp_path: Path, caplog) -> None:
    """The sample points at the Cosmos emulator (:8081) and Azurite (UseDevelopmentStorage); with
    neither running the devhost starts its own servers in their place and says so."""
    settings = tmp_path / "local.settings.json"
    shutil.copy(ROOT / "local.settings.sample.json", settings)
    cfg = RunConfig(
        players=10,
        duration_s=3600,
        partitions=4,
        state_dir=tmp_path / "state",
        fresh=True,
        report_dir=None,
        settings_path=settings,
        progress=False,
    )
    summary = Host(cfg).run().summary
    assert summary["events_processed"] > 0 and summary["pipeline"]["signals"] > 0
    assert "COSMOS_ENDPOINT http://127.0.0.1:8081" in caplog.text and "UseDevelopmentStorage" in caplog.text


def test_a_local_cosmos_endpoint_without_key_is_a_clear_configuration_error() -> None:
    from shared.config import ConfigError, load

    with pytest.raises(ConfigError, match="COSMOS_KEY is required"):
        load({"COSMOS_ENDPOINT": "http://127.0.0.1:8081", "COSMOS_KEY": ""})
