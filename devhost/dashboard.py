"""The devhost dashboard: one page and three read-only JSON endpoints on the webhook server.

``python -m devhost run --serve`` (and ``--transport http``) starts the loopback
webhook server at the beginning of the run; the dashboard is served by that same
server, so it shows the run while it is in flight and the figures after it:

- ``GET /dashboard/``: the page (``devhost/static``: plain HTML, CSS and JS, no build step);
- ``GET /devhost/api/figures[?since=N]``: the app's own OpenTelemetry instruments
  (``metrics.counts_table`` over this run's snapshot) and the host's state (log,
  checkpoints, per-partition backlog, entity queue), plus the per-second series
  from row ``N`` on (the page asks only for the rows it has not got yet);
- ``GET /devhost/api/players``: players to inspect (recently run entities, players with sent actions);
- ``GET /devhost/api/players/{id}/documents``: that player's actions and dead letters, read
  from Cosmos by partition key with parameterised queries;
- ``GET /devhost/api/whatif`` and ``/devhost/api/whatif.png``: the newest what-if report
  (``python -m devhost whatif``) in the report folder, and its chart.

The page reads a player's state through the app's own ``GET /api/players/{id}``, its decisions
(sent, holdout, suppressed per rule, shadow) through ``GET /api/players/{id}/actions``, and erases
through the app's ``DELETE /api/players/{id}``; the dashboard itself never writes anything.
Every endpoint runs on the event loop thread (the only thread that touches SQLite); the
Cosmos reads run in a worker thread. Requests whose ``Host`` is not the loopback address
and port the server listens on are refused (a web page elsewhere cannot read player data
through DNS rebinding).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devhost import metrics
from shared import telemetry

if TYPE_CHECKING:
    from devhost.host import Host, Pipeline
    from devhost.webserver import WebhookServer

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# The page's files, by URL name; nothing else under static/ is served.
FILES = {
    "": ("index.html", "text/html"),
    "index.html": ("index.html", "text/html"),
    "dashboard.js": ("dashboard.js", "text/javascript"),
    "dashboard.css": ("dashboard.css", "text/css"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_DOCUMENTS = 500  # per container, newest first: an inspector, not an export
PLAYERS_LISTED = 12
SYSTEM_FIELDS = ("_rid", "_self", "_etag", "_attachments")


def _rates(d: metrics.Snapshot, dt: float) -> dict[str, Any]:
    """Per-second figures of one interval's difference ``d``."""

    def per_s(name: str) -> float:
        return round(d.total(name) / dt, 2)

    lat = d.histogram(telemetry.ACTION_LATENCY)
    return {
        "events_in": per_s(telemetry.EVENTS_IN),
        "dropped": per_s(telemetry.EVENTS_DROPPED),
        "dead_lettered": per_s(telemetry.EVENTS_DEADLETTERED),
        "signals": per_s(telemetry.SIGNALS),
        "entity_operations": per_s(telemetry.ENTITY_OPERATIONS),
        "scored": per_s(telemetry.SCORES),
        "actions": {k: round(v / dt, 3) for k, v in d.by(telemetry.ACTIONS, "type").items()},
        "rejections": per_s(telemetry.REJECTIONS),
        "latency_p50_ms": lat.quantile(0.5) if lat and lat.count else None,
        "latency_p99_ms": lat.quantile(0.99) if lat and lat.count else None,
    }


def _outbox(snap: metrics.Snapshot) -> dict[str, Any]:
    """``pi.outbox.size`` is recorded after every entity operation: the largest outbox seen,
    and how many operations ended with actions still waiting to be written."""
    h = snap.histogram(telemetry.OUTBOX_SIZE)
    if h is None or h.count == 0:
        return {"operations": 0, "max": 0, "non_empty": 0, "mean": 0.0}
    empty = h.buckets[0] if h.bounds and h.bounds[0] <= 0 else 0
    return {
        "operations": h.count,
        "max": int(h.max),
        "non_empty": h.count - empty,
        "mean": round(h.total / h.count, 3),
    }


def figures_table(snap: metrics.Snapshot) -> dict[str, Any]:
    """Everything the page shows from the app's instruments (cumulative over the run)."""
    table = dict(metrics.counts_table(snap))
    table["deadletter_write_failures"] = snap.total(telemetry.DEADLETTER_WRITE_FAILURES)
    table["outbox_expired"] = snap.total(telemetry.OUTBOX_EXPIRED)
    table["outbox"] = _outbox(snap)
    return table


class Dashboard:
    """The page and its endpoints; ``pipeline`` is set when the run starts (``attach``)."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.host: Host | None = None
        self._rows: list[dict[str, Any]] = []  # the per-second series, computed once per sample
        # Where what-if reports are looked for when the run writes none (``--no-report``).
        self.default_report_dir = Path("reports")

    # -- routes ------------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self._to_page)
        app.router.add_get("/dashboard/{name:[A-Za-z0-9_.-]*}", self._file)
        app.router.add_get("/devhost/api/figures", self._figures)
        app.router.add_get("/devhost/api/players", self._players)
        app.router.add_get("/devhost/api/players/{playerId}/documents", self._documents)
        app.router.add_get("/devhost/api/whatif", self._whatif)
        app.router.add_get("/devhost/api/whatif.png", self._whatif_png)

    @staticmethod
    def _loopback(request: web.Request) -> bool:
        from devhost.webserver import is_loopback_host

        return is_loopback_host(request)

    @staticmethod
    def _json(body: Any, status: int = 200) -> web.Response:
        resp = web.json_response(body, status=status)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def _to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard/")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if not self._loopback(request):
            return web.Response(status=421, text="the dashboard answers on its loopback address only")
        entry = FILES.get(request.match_info["name"])
        if entry is None:
            return web.Response(status=404, text="not found")
        name, content_type = entry
        resp = web.Response(body=(STATIC / name).read_bytes(), content_type=content_type, charset="utf-8")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    # -- figures -----------------------------------------------------------------------------------
    def _series(self, p: Pipeline, upto: float | None) -> list[dict[str, Any]]:
        """Rows for the sampler's intervals so far (each computed once)."""
        samples = p.samples
        while len(self._rows) + 1 < len(samples):
            i = len(self._rows)
            (t0, a), (t1, b) = samples[i], samples[i + 1]
            dt = t1 - t0
            row: dict[str, Any] = {"t": round(t1, 3)}
            if dt > 0:
                row.update(_rates(b.minus(a), dt))
            backlog = p.backlog[i + 1] if i + 1 < len(p.backlog) else None
            row["backlog_events"] = backlog[0] if backlog else None
            row["queued_operations"] = backlog[1] if backlog else None
            self._rows.append(row)
        rows = self._rows
        if upto is not None:  # after the run: its own intervals, not the idle serving time
            rows = [r for r in rows if r["t"] <= upto + 1e-6]
        return [r for r in rows if "events_in" in r]

    def figures(self, since: int = 0) -> dict[str, Any]:
        p, host = self.pipeline, self.host
        if p is None:
            return {"phase": "starting"}
        finished = host.finished if host is not None else None
        summary = finished.summary if finished is not None else None
        snap = p.meter.snapshot().minus(p.baseline)
        tails = p.event_log.tails
        partitions = []
        for pump in p.pumps:
            tail = tails.get(pump.partition, (0, 0))[0]
            partitions.append(
                {
                    "id": pump.partition,
                    "tail": tail,
                    "checkpoint": pump.checkpoint,
                    "backlog": max(0, tail - (pump.checkpoint + 1)),
                }
            )
        backlog_events, queued = p.backlog_now()
        rows = self._series(p, summary["wall_seconds"] if summary else None)
        since = max(0, min(since, len(rows)))
        sched, stats = p.scheduler.stats, p.stats
        return {
            "phase": "finished" if summary else "running",
            # the run's own length once it has ended, not the time the page has been served since
            "elapsed_s": summary["wall_seconds"] if summary else round(time.monotonic() - p.started, 3),
            "source": {
                "kind": p.cfg.source,
                "total": p.source.total,
                "appended": p.event_log.total,
                "closed": p.event_log.closed.is_set(),
            },
            "events_checkpointed": p.checkpointed(),
            "pipeline": figures_table(snap),
            "rates": rows[-1] if rows and not summary else None,
            "host": {
                "backlog_events": backlog_events,
                "entity_queue_depth": queued,
                "entity_batches": sched.batches,
                "entity_operations": sched.operations,
                "entity_operation_errors": sched.operation_errors,
                "entity_batch_failures": sched.batch_failures,
                "trigger_batches": stats.batches,
                "retries": stats.retries,
                "failed_batches": stats.failed_batches,
                "redelivered_events": stats.redelivered,
                "max_lag": p.cfg.max_lag,
            },
            "partitions": partitions,
            "series": {"since": since, "next": len(rows), "rows": rows[since:]},
            "summary": summary,
            "report": str(finished.report_json) if finished is not None and finished.report_json else None,
        }

    async def _figures(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return web.Response(status=421)
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return self._json({"error": "since must be a whole number"}, 400)
        return self._json(self.figures(since))

    # -- the inspector -----------------------------------------------------------------------------
    async def _players(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return web.Response(status=421)
        recent: list[str] = []
        p = self.pipeline
        if p is not None:  # the entities whose state was saved last (the app's one entity function)
            rows = p.db.conn.execute(
                "SELECT key, state FROM entities WHERE name IN (SELECT value FROM json_each(?)) "
                "ORDER BY at_ms DESC",
                (json.dumps(sorted(p.scheduler.handlers)),),
            )
            for key, state in rows:  # an erasure saves the tombstone last: skip erased players
                if not _erased(state):
                    recent.append(str(key))
                    if len(recent) == PLAYERS_LISTED:
                        break
        try:
            with_actions = await asyncio.to_thread(_players_with_actions, PLAYERS_LISTED)
            error = None
        except Exception as exc:  # noqa: BLE001 - the page shows why, the run goes on
            with_actions, error = [], f"{type(exc).__name__}: {exc}"
        return self._json({"recent": recent, "with_actions": with_actions, "error": error})

    async def _documents(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return web.Response(status=421)
        from shared.events import is_valid_player_id

        player_id = request.match_info["playerId"]
        if not is_valid_player_id(player_id):
            return self._json({"error": "not a valid player id"}, 400)
        try:
            actions, deadletters = await asyncio.to_thread(_player_documents, player_id)
        except Exception as exc:  # noqa: BLE001 - Cosmos unreachable: say so, do not fail the run
            return self._json({"error": f"Cosmos read failed: {type(exc).__name__}: {exc}"}, 502)
        return self._json({"playerId": player_id, "actions": actions, "deadletters": deadletters})

    # -- the last what-if report ---------------------------------------------------------------------
    @property
    def report_dir(self) -> Path:
        p = self.pipeline
        cfg_dir = getattr(p.cfg, "report_dir", None) if p is not None else None
        return Path(cfg_dir) if cfg_dir else self.default_report_dir

    def last_whatif(self) -> Path | None:
        """The newest ``whatif-*.json`` in the report folder (by modification time, then name)."""
        found = [(f.stat().st_mtime, f.name, f) for f in self.report_dir.glob("whatif-*.json") if f.is_file()]
        return max(found)[2] if found else None

    async def _whatif(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return web.Response(status=421)
        path = self.last_whatif()
        if path is None:
            return self._json({"report": None, "folder": str(self.report_dir)})
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return self._json({"report": None, "path": str(path), "error": f"unreadable: {exc}"})
        png = path.with_suffix(".png")
        return self._json(
            {"report": report, "path": str(path), "png": "/devhost/api/whatif.png" if png.is_file() else None}
        )

    async def _whatif_png(self, request: web.Request) -> web.StreamResponse:
        if not self._loopback(request):
            return web.Response(status=421)
        path = self.last_whatif()
        png = path.with_suffix(".png") if path is not None else None
        if png is None or not png.is_file():
            return web.Response(status=404, text="no what-if chart")
        resp = web.Response(body=png.read_bytes(), content_type="image/png")
        resp.headers["Cache-Control"] = "no-store"
        return resp


def _erased(stored: str | None) -> bool:
    """The saved state is an erased player's tombstone: what the app's read API answers 404
    ``was erased`` for (functions/api.py), so the inspector would show nothing to inspect."""
    from shared.entity import load_state

    try:
        state = load_state(json.loads(stored) if stored else None)
    except ValueError:  # a state this code cannot read: listed, the API says what it is
        return False
    return bool(state.erased_ms) and not state.buf


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in SYSTEM_FIELDS}


def _player_documents(player_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One player's actions and dead letters: single-partition, parameterised queries."""
    from shared import runtime
    from shared.store import get_store

    store = get_store(runtime.settings().cosmos)
    out = []
    for container in (store.actions, store.deadletters):
        docs = container.query_items(
            "SELECT * FROM c WHERE c.playerId = @p",
            parameters=[{"name": "@p", "value": player_id}],
            partition_key=player_id,
        )
        rows = [_clean(d) for _, d in zip(range(MAX_DOCUMENTS), docs, strict=False)]
        rows.sort(key=lambda d: str(d.get("eventTime") or d.get("receivedAt") or ""), reverse=True)
        out.append(rows)
    return out[0], out[1]


# Sent actions only: not the suppressed or shadow aggregates, not the holdout decisions.
SENT_ACTIONS_QUERY = (
    "SELECT c.playerId FROM c WHERE c.status = 'pending' OR c.status = 'accepted' OR c.status = 'dismissed'"
)


def _players_with_actions(limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` players that have sent actions, with their counts (one cross-partition read
    of the ids only, stopped after MAX_DOCUMENTS rows)."""
    from shared import runtime
    from shared.store import get_store

    counts: dict[str, int] = {}
    rows = get_store(runtime.settings().cosmos).actions.query_items(
        SENT_ACTIONS_QUERY, enable_cross_partition_query=True
    )
    for _, row in zip(range(MAX_DOCUMENTS), rows, strict=False):
        pid = str(row.get("playerId"))
        counts[pid] = counts.get(pid, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [{"playerId": pid, "actions": n} for pid, n in ranked]


def attach(server: WebhookServer, pipeline: Pipeline, host: Host) -> str:
    """Point the server's dashboard at this run and print its URL; returns the URL."""
    server.dashboard.pipeline = pipeline
    server.dashboard.host = host
    url = f"{server.base_url}/dashboard/"
    line = f"dashboard {url}"
    if pipeline.bar is not None:
        pipeline.bar.write(line)  # above the progress bar, on stdout
    else:
        print(line)
    sys.stdout.flush()
    return url
