"""The pseudonymisation keys: refused in Azure when empty or an unresolved Key Vault reference,
generated (and said so, once) locally. "In Azure" is told as the Functions host tells it."""

from __future__ import annotations

import logging

import pytest

from shared import config, erasure, telemetry

ENDPOINT = {"COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/"}
KEYS = {"ERASURE_HASH_KEY": "e-secret", "TELEMETRY_HASH_KEY": "t-secret"}
UNRESOLVED = "@Microsoft.KeyVault(VaultName=kv-pi;SecretName=erasure-hash-key)"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_told", set())
    for name in (
        "WEBSITE_INSTANCE_ID",
        "WEBSITE_SKU",
        "WEBSITE_SITE_NAME",
        "WEBSITE_POD_NAME",
        "LEGION_SERVICE_HOST",
        *config.HASH_KEYS,
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("markers", "expected"),
    [
        ({"WEBSITE_INSTANCE_ID": "abc123"}, "WEBSITE_INSTANCE_ID"),  # App Service, Premium
        ({"WEBSITE_SKU": "FlexConsumption"}, "WEBSITE_SKU"),  # Flex Consumption, site settings
        ({"WEBSITE_POD_NAME": "pod", "LEGION_SERVICE_HOST": "10.0.0.1"}, "LEGION_SERVICE_HOST"),  # Flex
        ({"CONTAINER_NAME": "c1", "WEBSITE_SITE_NAME": "func-pi"}, "WEBSITE_SITE_NAME"),  # Linux Consumption
        ({"CONTAINER_NAME": "c1"}, None),  # any container (this CI's sets it)
        ({"LEGION_SERVICE_HOST": "10.0.0.1"}, None),
        ({"WEBSITE_SKU": "Dynamic"}, None),  # a SKU alone (no instance) is not enough
        ({"FUNCTIONS_CORETOOLS_ENVIRONMENT": "true"}, None),  # func start
        ({}, None),
    ],
)
def test_azure_is_told_as_the_functions_host_tells_it(markers: dict[str, str], expected: str | None) -> None:
    assert config.hosted_in_azure(markers) == expected


@pytest.mark.parametrize(
    ("value", "problem"), [("", "empty"), ("  ", "empty"), (UNRESOLVED, "an unresolved Key Vault reference")]
)
def test_in_azure_a_missing_or_unresolved_key_stops_the_settings(value: str, problem: str) -> None:
    env = {**ENDPOINT, **KEYS, "ERASURE_HASH_KEY": value, "WEBSITE_INSTANCE_ID": "abc"}
    with pytest.raises(config.HashKeyError) as err:
        config.load(env)
    assert err.value.problems == {"ERASURE_HASH_KEY": problem}
    assert "ERASURE_HASH_KEY is " + problem in str(err.value) and "Key Vault Secrets User" in str(err.value)
    assert "t-secret" not in str(err.value)
    with pytest.raises(config.HashKeyError):
        config.hash_key("ERASURE_HASH_KEY", env)
    assert config.hash_key("TELEMETRY_HASH_KEY", env) == "t-secret"


def test_in_azure_every_unusable_key_is_named_at_once() -> None:
    env = {**ENDPOINT, "WEBSITE_SKU": "FlexConsumption", "TELEMETRY_HASH_KEY": UNRESOLVED}
    with pytest.raises(config.HashKeyError) as err:
        config.load(env)
    assert err.value.problems == {
        "ERASURE_HASH_KEY": "empty",
        "TELEMETRY_HASH_KEY": "an unresolved Key Vault reference",
    }


def test_in_azure_resolved_keys_load() -> None:
    config.load({**ENDPOINT, **KEYS, "WEBSITE_INSTANCE_ID": "abc"})
    assert config.hash_key("ERASURE_HASH_KEY", {**KEYS, "WEBSITE_INSTANCE_ID": "abc"}) == "e-secret"


def test_locally_a_generated_key_is_used_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shared.config")
    config.load(ENDPOINT)
    config.load({**ENDPOINT, "ERASURE_HASH_KEY": UNRESOLVED})  # a reference copied into local settings
    first = config.hash_key("ERASURE_HASH_KEY", {})
    assert first == config.hash_key("ERASURE_HASH_KEY", {}) == config.local_hash_key("ERASURE_HASH_KEY")
    assert first != config.local_hash_key("TELEMETRY_HASH_KEY")  # each its own key
    said = [r.getMessage() for r in caplog.records if r.name == "shared.config"]
    assert len(said) == 2, said  # once per key per process, however often it is asked for
    assert all("generated" in m and "local development only" in m for m in said)
    assert {m.split()[1] for m in said} == set(config.HASH_KEYS)


def test_erasure_records_use_the_key_and_refuse_in_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    local = erasure.erased_key("eve")
    assert local == erasure.erased_key("eve") and "eve" not in local
    monkeypatch.setenv("ERASURE_HASH_KEY", "k1")
    keyed = erasure.erased_key("eve")
    assert keyed != local
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "abc")
    assert erasure.erased_key("eve") == keyed  # resolved in Azure: the same record id
    monkeypatch.setenv("ERASURE_HASH_KEY", UNRESOLVED)
    with pytest.raises(config.HashKeyError):
        erasure.erased_key("eve")  # never a record keyed with the reference's text


def test_telemetry_logs_an_unusable_key_at_start_instead_of_failing_the_import(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        assert telemetry.configure({"WEBSITE_INSTANCE_ID": "abc", "TELEMETRY_HASH_KEY": UNRESOLVED}) in (
            "none",
            "configured",
        )
        assert "TELEMETRY_HASH_KEY is an unresolved Key Vault reference" in caplog.text
        telemetry.configure({"TELEMETRY_HASH_KEY": "t1"})
        assert telemetry.player_ref("p1") != telemetry.player_ref("p1", hashed=False)
    finally:
        telemetry.set_hash_key(None)
