"""In Azure, a pseudonymisation key that is empty or an unresolved Key Vault reference stops the
app's handlers and the health endpoint says why (the real app through the hosting path)."""

from __future__ import annotations

import json

import pytest

from tests.apphost import Capture, call_http, hub_events, run_ingest
from tests.helpers import NOW_MS, body, cloud_event

pytestmark = pytest.mark.cosmos

UNRESOLVED = "@Microsoft.KeyVault(VaultName=kv-pi;SecretName=telemetry-hash-key)"


@pytest.fixture
def in_azure(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    from shared import runtime

    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123abcd")  # what App Service sets (docs/privacy.md)
    monkeypatch.setenv("ERASURE_HASH_KEY", "e-secret")
    monkeypatch.setenv("TELEMETRY_HASH_KEY", "t-secret")
    runtime.reset()
    yield monkeypatch
    runtime.reset()


def test_health_is_ok_in_azure_with_resolved_keys(in_azure: pytest.MonkeyPatch) -> None:
    resp = call_http("health", "GET", "/api/health", {})
    assert resp.status == 200 and json.loads(resp.body)["status"] == "ok"


@pytest.mark.parametrize(
    ("value", "problem"), [("", "empty"), (UNRESOLVED, "an unresolved Key Vault reference")]
)
def test_health_names_an_unusable_key_and_never_its_value(
    in_azure: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str, problem: str
) -> None:
    in_azure.setenv("TELEMETRY_HASH_KEY", value)
    resp = call_http("health", "GET", "/api/health", {})
    assert resp.status == 503
    answer = json.loads(resp.body)
    assert answer["status"] == "unhealthy" and answer["failing"] == "configuration"
    assert answer["settings"] == {"TELEMETRY_HASH_KEY": problem}
    assert "resolves" in answer["reason"]
    assert "e-secret" not in resp.body.decode() and "kv-pi" not in resp.body.decode()
    assert "TELEMETRY_HASH_KEY is " + problem in caplog.text  # the clear error, in the log


def test_ingest_fails_fast_with_the_reason_and_parks_nothing(in_azure: pytest.MonkeyPatch) -> None:
    """Every handler reads the settings first: with a key unusable an ingest invocation fails with
    the reason, even past the parking limit, so the host retries the batch (nothing is parked
    with events that could not be checked against erasures, nothing lost) until the key resolves."""
    from devhost.functions_host.worker import RetryContext
    from shared.config import HashKeyError

    in_azure.setenv("ERASURE_HASH_KEY", UNRESOLVED)
    events = hub_events([body(cloud_event(player="p-1", event_id="k1", at_ms=NOW_MS - 1000))], seq0=1)
    capture = Capture()
    with pytest.raises(HashKeyError, match="ERASURE_HASH_KEY is an unresolved Key Vault reference"):
        run_ingest(events, capture, retry=RetryContext(50, -1))
    assert capture.posts == []  # nothing signalled
