"""What one devhost run is asked to do (``RunConfig``), what it gives back (``RunResult``), and
the one error that stops it before it starts (``RunError``): shared by the host, the pipeline
and the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost import metrics
from devhost.functions_host.settings import (
    HOST_JSON,
)
from devhost.servers.node import STARTUP_LIMIT_S

PLAIN_PROGRESS_S = 10.0  # off a terminal: one plain progress line this often
# `run --summary` without a HOLDOUT_SHARE of its own holds out half of every action type, so the
# demo's summary has two groups to compare (the app's default holds out 10% of bonus offers only).
DEMO_HOLDOUT_SHARE = "break_suggestion=0.5,help_offer=0.5,bonus_offer=0.5"


class RunError(RuntimeError):
    """The run cannot start; the message says why and what to do."""


@dataclass
class RunConfig:
    source: str = "synthetic"
    players: int = 200
    duration_s: float = 86_400.0
    seed: int = 7
    bad_share: float = 0.0
    redeliver_share: float = 0.0
    start_ms: int | None = None
    rate: float = 0.0
    file: Path | None = None
    transport: str = "inproc"
    partitions: int = 32
    state_dir: Path = Path(".devhost")
    fresh: bool = False
    report_dir: Path | None = Path("reports")
    settings_path: Path | None = None  # None: ./local.settings.json when it exists
    use_local_settings: bool = True
    entity_workers: int = 4
    max_lag: int = 4096
    progress: bool = True
    progress_every_s: float = PLAIN_PROGRESS_S
    serve: bool = False
    # Scales the host's retry waits (tests: a parked batch in milliseconds instead of minutes).
    retry_delay_scale: float = 1.0
    # After the events are processed, wait up to this long for queued outbox reminders (0: don't).
    drain_reminders_s: float = 0.0
    host_json: Path = HOST_JSON
    # After the run (and the synthetic players' responses), run the daily summary of this UTC day
    # (None: the last full day of the window) and report it.
    summary: bool = False
    summary_day: str | None = None
    # HOLDOUT_SHARE for the run when the settings (local.settings.json) name none; None: the app's own
    # default. The command line gives DEMO_HOLDOUT_SHARE with --summary.
    holdout_share: str | None = None
    # Language worker processes (FUNCTIONS_WORKER_PROCESS_COUNT): None reads the setting; unset there
    # too, the app runs in the devhost's own process (embedded). 1-10: that many worker processes.
    worker_processes: int | None = None
    # How long start-up waits for its servers (listening, Cosmos containers) before a clear error.
    startup_limit_s: float = STARTUP_LIMIT_S


@dataclass
class RunResult:
    summary: dict[str, Any]
    report_json: Path | None = None
    report_png: Path | None = None
    samples: list[tuple[float, metrics.Snapshot]] = field(default_factory=list)
    # Per sample: events appended but not yet checkpointed, and entity operations queued.
    backlog: list[tuple[int, int]] = field(default_factory=list)
    deadletters_file: Path | None = None
    started_monotonic: float = 0.0  # when the pipeline started (time.monotonic): the samples' zero
    daily_summary: dict[str, Any] | None = None  # GET /api/summaries/{day}'s body, with --summary
    summary_png: Path | None = None
