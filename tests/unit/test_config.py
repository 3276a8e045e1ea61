"""The config module fails fast, naming the setting, and refuses keys outside local emulators."""

from __future__ import annotations

import pytest

from shared import config


def test_minimal_azure_settings_load_with_defaults() -> None:
    s = config.load({"COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/", "AZURE_CLIENT_ID": "abc"})
    assert s.cosmos.key is None and s.cosmos.managed_identity_client_id == "abc"
    assert s.cosmos.database == "interventions" and s.daily_action_cap == 3
    assert s.disabled_action_types == frozenset() and s.hash_player_ids_in_telemetry is True


def test_missing_endpoint_is_named() -> None:
    with pytest.raises(config.ConfigError, match="COSMOS_ENDPOINT is required"):
        config.load({})


@pytest.mark.parametrize("endpoint", ["https://acct.documents.azure.com:443/", "http://10.0.0.5:8081"])
def test_a_key_is_refused_for_non_local_endpoints(endpoint: str) -> None:
    with pytest.raises(config.ConfigError, match="only for a local emulator"):
        config.load({"COSMOS_ENDPOINT": endpoint, "COSMOS_KEY": "secret"})


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:8081", "https://localhost:8081/", "http://[::1]:8081"]
)
def test_a_key_is_accepted_for_local_emulators(endpoint: str) -> None:
    assert config.load({"COSMOS_ENDPOINT": endpoint, "COSMOS_KEY": "k"}).cosmos.key == "k"


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("DAILY_ACTION_CAP", "three", "DAILY_ACTION_CAP must be an integer"),
        ("MAX_FUTURE_SKEW_SECONDS", "soon", "MAX_FUTURE_SKEW_SECONDS must be a number"),
        ("TELEMETRY_HASH_PLAYER_ID", "maybe", "TELEMETRY_HASH_PLAYER_ID must be true or false"),
    ],
)
def test_malformed_values_are_named(name: str, value: str, match: str) -> None:
    with pytest.raises(config.ConfigError, match=match):
        config.load({"COSMOS_ENDPOINT": "http://127.0.0.1:1", "COSMOS_KEY": "a2V5", name: value})


def test_kill_switches_parse_as_a_set() -> None:
    s = config.load(
        {
            "COSMOS_ENDPOINT": "http://127.0.0.1:1",
            "COSMOS_KEY": "a2V5",
            "DISABLED_ACTION_TYPES": " bonus_offer, ,help_offer",
        }
    )
    assert s.disabled_action_types == frozenset({"bonus_offer", "help_offer"})


def test_an_unknown_kill_switch_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="unknown action types \\['bonus'\\]"):
        config.load(
            {"COSMOS_ENDPOINT": "http://127.0.0.1:1", "COSMOS_KEY": "a2V5", "DISABLED_ACTION_TYPES": "bonus"}
        )


@pytest.mark.parametrize("ttl", ["-1", "0", "86400", "172800", "431999"])
def test_an_action_ttl_shorter_than_a_summary_needs_is_refused(ttl: str) -> None:
    """Under a day no day could be summarised; under 5 days a day's actions expire before every
    outcome window (72 h) has closed and its summary can become final."""
    base = {"COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/", "AZURE_CLIENT_ID": "abc"}
    with pytest.raises(config.ConfigError, match="ACTION_TTL_SECONDS must be at least 432000"):
        config.load({**base, "ACTION_TTL_SECONDS": ttl})
    assert config.load({**base, "ACTION_TTL_SECONDS": "432000"}).cosmos.action_ttl_seconds == 432000
