"""Telemetry set-up choices and the player-id hashing rule."""

from __future__ import annotations

import logging

import pytest

from shared import telemetry


def test_player_ids_are_hashed_unless_configured_otherwise() -> None:
    ref = telemetry.player_ref("player-00042")
    assert ref != "player-00042" and len(ref) == 16
    assert ref == telemetry.player_ref("player-00042")
    assert telemetry.player_ref("player-00042", hashed=False) == "player-00042"


def test_a_hash_key_makes_the_hash_unguessable(monkeypatch) -> None:
    plain = telemetry.player_ref("player-00042")
    monkeypatch.setattr(telemetry, "_hash_key", None)
    telemetry.set_hash_key("k1")
    keyed = telemetry.player_ref("player-00042")
    telemetry.set_hash_key("k2")
    assert len({plain, keyed, telemetry.player_ref("player-00042")}) == 3
    telemetry.set_hash_key(None)
    assert telemetry.player_ref("player-00042") == plain


def test_without_a_destination_nothing_is_exported_and_sdk_loggers_are_quiet(monkeypatch) -> None:
    monkeypatch.setattr(telemetry, "_configured", False)
    logging.getLogger("azure.cosmos").setLevel(logging.DEBUG)
    assert telemetry.configure({}) == "none"
    assert logging.getLogger("azure.cosmos").level == logging.WARNING
    assert logging.getLogger("azure").level == logging.WARNING


def test_every_metric_name_is_an_instrument() -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    inst = telemetry.Instruments(MeterProvider().get_meter("t"))
    names = {getattr(inst, a).name for a in vars(inst)}
    assert names == set(telemetry.METRIC_NAMES)


@pytest.mark.parametrize("name", telemetry.METRIC_NAMES)
def test_metric_names_follow_one_namespace(name: str) -> None:
    assert name.startswith("pi.") and name == name.lower()
