"""Telemetry set-up choices and the player-id hashing rule."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import telemetry

ROOT = Path(__file__).resolve().parents[2]


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


# --- Application Insights set-up (azure-monitor-opentelemetry) -------------------------------

FAKE_CONNECTION_STRING = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
)
AZURE_ENV = {"APPLICATIONINSIGHTS_CONNECTION_STRING": FAKE_CONNECTION_STRING}
# What the distro turns on unless told otherwise (azure-monitor-opentelemetry 1.8.11).
DEFAULT_ON = ("azure_sdk", "requests", "urllib", "urllib3", "httpx", "django", "fastapi", "flask", "psycopg2")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class FakeDistro:
    """Stands in for ``configure_azure_monitor``: records its keywords and, like the real
    one's logging set-up, puts a handler on the logger it is given."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.attach_log_handler = True
        self.log_handler = _Collect()

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.attach_log_handler:
            logging.getLogger(kwargs.get("logger_name", "")).addHandler(self.log_handler)

    @property
    def kwargs(self) -> dict[str, Any]:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


@pytest.fixture
def distro(monkeypatch) -> Iterator[FakeDistro]:
    """``configure_azure_monitor`` replaced by a recorder.

    This is the one place the tests mock: a live Application Insights cannot run here, and the
    real distro installs process-wide providers the test session's own TracerProvider
    (tests/conftest.py) must keep. ``test_the_real_distro_instruments_no_http_client`` runs the
    real one, in a child process.
    """
    import azure.monitor.opentelemetry as azure_monitor

    fake = FakeDistro()
    monkeypatch.setattr(azure_monitor, "configure_azure_monitor", fake)
    monkeypatch.setattr(telemetry, "_configured", False)
    monkeypatch.setattr(telemetry, "_instruments", telemetry._instruments)
    monkeypatch.setattr(telemetry, "_hash_key", telemetry._hash_key)
    app_logger = logging.getLogger("shared")
    monkeypatch.setattr(app_logger, "propagate", app_logger.propagate)
    yield fake
    for name in ("", "shared"):
        logging.getLogger(name).removeHandler(fake.log_handler)


def test_azure_monitor_instruments_no_library_only_the_apps_own_spans(distro: FakeDistro) -> None:
    from azure.monitor.opentelemetry._constants import _ALL_SUPPORTED_INSTRUMENTED_LIBRARIES

    assert telemetry.configure(AZURE_ENV) == "azure-monitor"
    options = distro.kwargs["instrumentation_options"]
    for name in (*DEFAULT_ON, *_ALL_SUPPORTED_INSTRUMENTED_LIBRARIES):
        assert options.get(name) == {"enabled": False}, name
    # The explicit list (and the docs) name exactly what the installed distro would turn on.
    assert set(telemetry.DISTRO_INSTRUMENTATIONS) == set(_ALL_SUPPORTED_INSTRUMENTED_LIBRARIES)
    assert distro.kwargs["connection_string"] == FAKE_CONNECTION_STRING


def test_the_sampler_is_explicit_and_keeps_every_traced_event_by_default(distro: FakeDistro) -> None:
    telemetry.configure(AZURE_ENV)
    # Without a sampler keyword the distro would rate-limit to 5 traces/s.
    assert distro.kwargs["sampling_ratio"] == 1.0
    assert "traces_per_second" not in distro.kwargs


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"TELEMETRY_SAMPLING_RATIO": "0.25"}, {"sampling_ratio": 0.25}),
        ({"TELEMETRY_SAMPLING_RATIO": "0"}, {"sampling_ratio": 0.0}),
        ({"TELEMETRY_SAMPLING_RATIO": " "}, {"sampling_ratio": 1.0}),
        ({"TELEMETRY_TRACES_PER_SECOND": "20"}, {"traces_per_second": 20.0}),
        ({"TELEMETRY_TRACES_PER_SECOND": "0.5"}, {"traces_per_second": 0.5}),
    ],
)
def test_the_sampler_follows_the_settings(
    distro: FakeDistro, settings: dict[str, str], expected: dict[str, float]
) -> None:
    telemetry.configure({**AZURE_ENV, **settings})
    sampler = {k: v for k, v in distro.kwargs.items() if k in ("sampling_ratio", "traces_per_second")}
    assert sampler == expected


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"TELEMETRY_SAMPLING_RATIO": "half"}, "TELEMETRY_SAMPLING_RATIO"),
        ({"TELEMETRY_SAMPLING_RATIO": "1.5"}, "TELEMETRY_SAMPLING_RATIO"),
        ({"TELEMETRY_SAMPLING_RATIO": "-0.1"}, "TELEMETRY_SAMPLING_RATIO"),
        ({"TELEMETRY_SAMPLING_RATIO": "nan"}, "TELEMETRY_SAMPLING_RATIO"),
        ({"TELEMETRY_TRACES_PER_SECOND": "0"}, "TELEMETRY_TRACES_PER_SECOND"),
        ({"TELEMETRY_TRACES_PER_SECOND": "-5"}, "TELEMETRY_TRACES_PER_SECOND"),
        ({"TELEMETRY_TRACES_PER_SECOND": "inf"}, "TELEMETRY_TRACES_PER_SECOND"),
        ({"TELEMETRY_TRACES_PER_SECOND": "fast"}, "TELEMETRY_TRACES_PER_SECOND"),
        (
            {"TELEMETRY_SAMPLING_RATIO": "0.5", "TELEMETRY_TRACES_PER_SECOND": "5"},
            "TELEMETRY_TRACES_PER_SECOND",
        ),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, "OTEL_TRACES_SAMPLER"),
    ],
)
def test_a_bad_sampler_setting_fails_naming_it(
    distro: FakeDistro, settings: dict[str, str], named: str
) -> None:
    from shared.config import ConfigError

    with pytest.raises(ConfigError, match=named):
        telemetry.configure({**AZURE_ENV, **settings})
    assert distro.calls == []
    # Not marked configured: the next attempt fails the same way instead of passing silently.
    assert telemetry._configured is False


def test_the_apps_logs_are_exported_once_with_their_trace(distro: FakeDistro) -> None:
    root_handler = _Collect()
    logging.getLogger().addHandler(root_handler)
    try:
        telemetry.configure(AZURE_ENV)
        logging.getLogger("shared.store").warning("action write failed; kept in outbox")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert distro.kwargs["logger_name"] == "shared"
    # Exported by the distro (carrying the active span's trace) ...
    assert [r.getMessage() for r in distro.log_handler.records] == ["action write failed; kept in outbox"]
    # ... and not also forwarded by the Functions worker, whose handler sits on the root logger.
    assert not [r for r in root_handler.records if r.name.startswith("shared")]
    assert logging.getLogger("shared").propagate is False


def test_without_the_distros_log_handler_the_host_keeps_forwarding_the_logs(distro: FakeDistro) -> None:
    distro.attach_log_handler = False  # OTEL_LOGS_EXPORTER=none, or the distro's logging set-up failed
    telemetry.configure(AZURE_ENV)
    assert logging.getLogger("shared").propagate is True


def test_entra_authentication_uses_the_managed_identity(distro: FakeDistro) -> None:
    from azure.identity import ManagedIdentityCredential

    telemetry.configure(
        {
            **AZURE_ENV,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=x",
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
        }
    )
    assert isinstance(distro.kwargs["credential"], ManagedIdentityCredential)


_REAL_DISTRO = """
import json, logging, sys
from shared import telemetry
choice = telemetry.configure(json.loads(sys.argv[1]))
from azure.core.settings import settings
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib import URLLibInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
shared_logger = logging.getLogger("shared")
print(json.dumps({
    "choice": choice,
    "instrumented": {
        type(i).__name__: i.is_instrumented_by_opentelemetry
        for i in (
            RequestsInstrumentor(), URLLib3Instrumentor(), URLLibInstrumentor(), HTTPXClientInstrumentor()
        )
    },
    "azure_core_tracing": repr(settings.tracing_implementation()),
    "sampler": trace.get_tracer_provider().sampler.get_description(),
    "shared_handlers": [type(h).__name__ for h in shared_logger.handlers],
    "shared_propagates": shared_logger.propagate,
}))
"""


def test_the_real_distro_instruments_no_http_client(tmp_path) -> None:
    """The real ``configure_azure_monitor``, offline, in a child process (it sets process-wide
    providers): the Cosmos SDK's transport (requests/urllib3) and the other HTTP clients stay
    uninstrumented, the sampler is the configured one, the app's logs go one way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        TMPDIR=str(tmp_path),  # the exporter's retry files for the unreachable endpoint
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",  # no calls to Microsoft's endpoints
        APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED="true",
        OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="otel",  # no Azure VM metadata lookup
        APPLICATIONINSIGHTS_CONNECTION_STRING=FAKE_CONNECTION_STRING,  # as the Functions host sets it
    )
    settings = {**AZURE_ENV, "TELEMETRY_SAMPLING_RATIO": "0.25"}
    proc = subprocess.run(
        [sys.executable, "-c", _REAL_DISTRO, json.dumps(settings)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["choice"] == "azure-monitor"
    assert seen["instrumented"] == {
        "RequestsInstrumentor": False,
        "URLLib3Instrumentor": False,
        "URLLibInstrumentor": False,
        "HTTPXClientInstrumentor": False,
    }
    assert seen["azure_core_tracing"] == "None"
    assert seen["sampler"] == "ApplicationInsightsSampler0.25"
    assert seen["shared_handlers"] == ["LoggingHandler"]
    assert seen["shared_propagates"] is False


def test_counts_in_the_tally_are_exported_when_the_process_exits() -> None:
    """telemetry.Tally sums per-operation counts in process; at exit it must flush them before the
    MeterProvider's own exit handler shuts the exporter down (atexit runs last-in first-out)."""
    import subprocess
    import sys

    code = (
        "import os; os.environ['TELEMETRY_CONSOLE'] = '1'\n"
        "from shared import telemetry\n"
        "telemetry.configure()\n"
        "m = telemetry.instruments()\n"
        "telemetry.tally.add(m.entity_operations, 7, (('op', 'events'),))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert '"pi.entity.operations"' in out.stdout
    assert '"value": 7' in out.stdout
