"""Daily summaries: a timer starts one small orchestration per day; HTTP starts and reads them.

    summary_timer (timer, 00:30 UTC)  -> start "daily_summary" for each kept day without a final
                                         summary (yesterday, and the days whose outcome windows were
                                         still open at their last run), id summary-YYYY-MM-DD
    POST /api/summaries/{day}         -> the same start for a past day the actions container keeps
                                         (202, status URL; today or an expired day: 400)
    GET  /api/summaries/{day}         -> status, and when complete the index and hour documents

    daily_summary (parent)  --24 x-->  summary_hour (child, one per UTC hour of the day)
                                         summary_scan_hour  (activity: read the hour, aggregate, export)
                                         summary_write_part (activity: upsert the hour's document)
                            merge the 24 fixed-size partials
                            summary_write_index (activity: upsert the day's index document)

Why hours (docs/workflows.md): every action document carries its UTC ``day`` and ``hour``, so a
child's query reads one hour of one day whatever the container's physical layout; 24 children
keep each history tiny and each query bounded; and what a child returns is a fixed-size partial
(``shared.summary``), so nothing between orchestrations grows with players or actions.

Starting a day that is running (or pending) is a no-op; a completed or failed day is started
again under the same instance id, which the Durable extension replaces with a fresh history
(its default ``overridableExistingInstanceStates``), and the documents it writes replace the
previous run's (same ids, upsert). Every run has its own id (``run``, drawn by the starter and
passed in the orchestration's input), written on the index, each hour document and each export's
header, so a re-run that failed part-way leaves parts a reader can tell apart (GET lists them as
``mixedRuns``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared import runtime, summary

log = logging.getLogger(__name__)
bp = df.Blueprint()

SCHEDULE = "0 30 0 * * *"  # NCRONTAB with seconds: 00:30:00 every day (UTC: the app's time zone)
ORCHESTRATOR = "daily_summary"
CHILD = "summary_hour"
# Activities: first retry after 5 s, 4 attempts in all (the extension's default back-off coefficient 1).
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=4)
ACTIVE = frozenset(
    {
        df.OrchestrationRuntimeStatus.Running,
        df.OrchestrationRuntimeStatus.Pending,
        df.OrchestrationRuntimeStatus.ContinuedAsNew,
        df.OrchestrationRuntimeStatus.Suspended,
    }
)


# -- starting a day -------------------------------------------------------------------------------


async def start_summary(
    client: df.DurableOrchestrationClient, day: str, now_ms: int | None = None
) -> tuple[str, bool]:
    """Start the day's summary unless it is running; (instance id, whether this call started it).
    Raises ``summary.BadDay`` for a day that cannot be summarised (today, the future, or older than
    the actions container keeps)."""
    now = runtime.now_ms() if now_ms is None else now_ms
    day = summary.check_summarisable(day, now, runtime.settings().cosmos.action_ttl_seconds)
    instance = summary.instance_id(day)
    status = await client.get_status(instance)
    if status and status.runtime_status in ACTIVE:
        return instance, False
    try:
        # The run id is drawn here, in the client, not in the orchestrator (which must be deterministic).
        await client.start_new(ORCHESTRATOR, instance, {"day": day, "run": uuid.uuid4().hex})
    except Exception:
        # Another start won the race (the extension refuses a running id with 500): a no-op too.
        status = await client.get_status(instance)
        if status and status.runtime_status in ACTIVE:
            return instance, False
        raise
    return instance, True


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
@bp.durable_client_input(client_name="client")
async def summary_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Once a day: every past day the actions container keeps whose summary is missing or not final
    (``summary.days_due``): yesterday, and the days whose outcome windows (72 hours at most) were
    still open at their last run. A missed run fires at start-up with ``past_due``."""
    from shared import summary_store

    now = runtime.now_ms()
    cosmos = runtime.settings().cosmos
    kept = summary.kept_days(now, cosmos.action_ttl_seconds)
    try:
        finals = await asyncio.to_thread(summary_store.index_finals, cosmos, kept)
    except Exception:  # noqa: BLE001 - unknown: every kept day is due (a final day re-run is harmless)
        log.exception("daily summary: the index documents cannot be read; starting every kept day")
        finals = {}
    failed: list[str] = []
    for day in summary.days_due(now, cosmos.action_ttl_seconds, finals):
        try:
            instance, started = await start_summary(client, day, now)
        except Exception:  # noqa: BLE001 - one day's failure must not stop the others
            log.exception("daily summary of %s could not be started", day)
            failed.append(day)
            continue
        log.info(
            "daily summary %s %s (past due: %s)",
            instance,
            "started" if started else "already running",
            timer.past_due,
        )
    if failed:  # the invocation fails (and is logged as such); POST these days to start them
        raise RuntimeError(f"daily summaries not started: {', '.join(failed)}")


# -- the orchestrations --------------------------------------------------------------------------


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def daily_summary(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    """Fan out to one child per hour, merge their fixed-size partials, write the index.

    The run id (drawn by the starter, in the input, so every replay reads the same) and the as-of
    time (the orchestration's clock at its start: what is open or closed) go to every child, so the
    whole run counts the same way and tags what it writes."""
    spec = context.get_input()
    day = str(spec["day"])
    run = str(spec.get("run") or context.new_uuid())
    as_of = int(context.current_utc_datetime.timestamp() * 1000)
    results = yield context.task_all(
        [
            context.call_sub_orchestrator(CHILD, {"day": day, "hour": h, "run": run, "asOf": as_of})
            for h in range(summary.HOURS)
        ]
    )
    merged = summary.merge_all(r["partial"] for r in results)
    exports = [r["export"] for r in results if r.get("export")]
    yield context.call_activity_with_retry(
        "summary_write_index",
        RETRY,
        {
            "day": day,
            "partial": merged,
            "parts": [summary.part_id(day, h) for h in range(summary.HOURS)],
            "exports": exports,
            "run": run,
            "asOf": as_of,
            "at": context.current_utc_datetime.isoformat(),
        },
    )
    return {
        "day": day,
        "index": summary.index_id(day),
        "run": run,
        "final": summary.is_final(day, as_of),
        "summary": summary.report(merged),
    }


@bp.orchestration_trigger(context_name="context", orchestration=CHILD)
def summary_hour(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    """One hour: read and aggregate (and export), then write the hour's document; returns the partial."""
    spec = context.get_input()
    scanned = yield context.call_activity_with_retry("summary_scan_hour", RETRY, spec)
    yield context.call_activity_with_retry(
        "summary_write_part",
        RETRY,
        {**scanned, "run": spec.get("run"), "at": context.current_utc_datetime.isoformat()},
    )
    return {"hour": scanned["hour"], "partial": scanned["partial"], "export": scanned["export"]}


# -- the activities ---------------------------------------------------------------------------------


@bp.activity_trigger(input_name="spec", activity="summary_scan_hour")
def summary_scan_hour(spec: dict) -> dict:
    """Read one hour of actions, aggregate them into a partial and write the hour's export blob."""
    from shared import summary_store
    from shared.features import FEATURES

    day, hour = str(spec["day"]), int(spec["hour"])
    run = spec.get("run")
    as_of = spec.get("asOf")
    as_of_ms = int(as_of) if as_of is not None else runtime.now_ms()
    cosmos = runtime.settings().cosmos
    partial = summary.empty()
    writer = summary_store.ExportWriter(
        summary_store.export_container(),
        summary.export_blob_name(day, hour),
        summary.export_header(list(FEATURES), day, hour, run),
    )
    for doc in summary_store.hour_documents(cosmos, day, hour):
        summary.add(partial, doc, as_of_ms)
        row = summary.export_row(doc)
        if row is not None:
            writer.add(row)
    partial["exportedRows"] = writer.rows
    return {"day": day, "hour": hour, "partial": partial, "export": writer.close()}


@bp.activity_trigger(input_name="part", activity="summary_write_part")
def summary_write_part(part: dict) -> str:
    from shared import summary_store

    day, hour = str(part["day"]), int(part["hour"])
    doc = summary.part_document(
        day, hour, part["partial"], part.get("export"), str(part["at"]), part.get("run")
    )
    summary_store.upsert(runtime.settings().cosmos, doc)
    return str(doc["id"])


@bp.activity_trigger(input_name="index", activity="summary_write_index")
def summary_write_index(index: dict) -> str:
    from shared import summary_store

    doc = summary.index_document(
        str(index["day"]),
        index["partial"],
        list(index["parts"]),
        list(index["exports"]),
        str(index["run"]),
        str(index["at"]),
        int(index["asOf"]) if index.get("asOf") is not None else None,
    )
    summary_store.upsert(runtime.settings().cosmos, doc)
    return str(doc["id"])


# -- HTTP ---------------------------------------------------------------------------------------------


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers or {}
    )


def _day(req: func.HttpRequest) -> str | func.HttpResponse:
    raw = req.route_params.get("day", "")
    try:
        return summary.parse_day(raw, summary.utc_today(runtime.now_ms())).isoformat()
    except summary.BadDay as exc:
        return _json({"error": str(exc)}, 400)


@bp.route(route="summaries/{day}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def start_day_summary(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Start the day's summary (or nothing, if it is running): 202 with where to read it; 400 for a
    day that is not a past day the actions container keeps."""
    raw = req.route_params.get("day", "")
    try:
        instance, started = await start_summary(client, raw)
    except summary.BadDay as exc:
        return _json({"day": raw, "error": str(exc)}, 400)
    day = raw
    status_url = f"/api/summaries/{day}"
    body = {
        "day": day,
        "instanceId": instance,
        "started": started,
        "statusUrl": status_url,
        "management": client.create_http_management_payload(instance),
    }
    return _json(body, 202, {"Location": status_url, "Retry-After": "5"})


@bp.route(route="summaries/{day}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def get_day_summary(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The orchestration's status; once it completed, the index document and the hours' documents."""
    day = _day(req)
    if isinstance(day, func.HttpResponse):
        return day
    instance = summary.instance_id(day)
    status = await client.get_status(instance)
    if not status or status.runtime_status is None:
        return _json(
            {"day": day, "instanceId": instance, "error": "no summary was started for this day"}, 404
        )
    body: dict[str, Any] = {
        "day": day,
        "instanceId": instance,
        "runtimeStatus": status.runtime_status.value,
        "createdTime": status.created_time.isoformat() if status.created_time else None,
        "lastUpdatedTime": status.last_updated_time.isoformat() if status.last_updated_time else None,
    }
    if status.runtime_status == df.OrchestrationRuntimeStatus.Completed:
        from shared import summary_store

        docs = await asyncio.to_thread(summary_store.read_day, runtime.settings().cosmos, day)
        index = next((d for d in docs if d.get("kind") == "index"), None)
        parts = sorted((d for d in docs if d.get("kind") == "hour"), key=lambda d: int(d["hour"]))
        body["index"] = index
        body["parts"] = parts
        # Hour documents another run wrote (a re-run that failed part-way): empty when consistent.
        body["mixedRuns"] = summary.mixed_parts(index, parts) if index else []
    elif status.runtime_status == df.OrchestrationRuntimeStatus.Failed:
        body["error"] = status.output
    return _json(body, 200 if status.runtime_status not in ACTIVE else 202)
