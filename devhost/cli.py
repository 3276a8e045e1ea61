"""``python -m devhost run ...``: run the real app end to end on this machine."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from devhost.run_config import DEMO_HOLDOUT_SHARE, PLAIN_PROGRESS_S

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(raw: str) -> float:
    """``600``, ``600s``, ``10m``, ``12h``, ``3d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", raw)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {raw!r} (examples: 600, 10m, 12h, 3d)")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be above 0: {raw!r}")
    return seconds


def _number(kind: type, low: float | None, high: float | None, what: str) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` within [low, high], with a one-line error."""

    def parse(raw: str) -> float | int:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {raw!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {raw}")
        return value

    return parse


positive_int = _number(int, 1, None, "a whole number of 1 or more")
non_negative = _number(float, 0, None, "a number of 0 or more")
share = _number(float, 0, 1, "a share between 0 and 1")
positive = _number(float, 1e-9, None, "a number above 0")


def start_time(raw: str) -> int:
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {raw!r}") from exc
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--start needs a time zone (e.g. ...Z): {raw!r}")
    return int(when.timestamp() * 1000)


def day_arg(raw: str) -> str:
    from shared.summary import BadDay, parse_day

    try:
        return parse_day(raw).isoformat()
    except BadDay as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line (and exit 2), not the whole usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except where there is none to show (a flag, no
    value) or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m devhost", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run the app end to end (source -> Event Hubs stand-in -> entities -> Cosmos)",
        description="Run the real app end to end on this machine: a source fills the Event Hubs "
        "stand-in, the real functions run as the Functions host runs them, actions land in Cosmos.",
        formatter_class=_Help,
    )
    run.add_argument(
        "--source",
        choices=("synthetic", "jsonl", "eventhub"),
        default="synthetic",
        help="where events come from: seeded synthetic players, a JSONL file, or a real Event Hub",
    )
    run.add_argument("--players", type=positive_int, default=200, help="synthetic: number of players")
    run.add_argument(
        "--duration",
        type=duration,
        default="1d",  # a string default goes through `type`, and --help shows it as written
        help="synthetic: journey window (ending now), e.g. 600, 12h, 1d; eventhub: how long to consume",
    )
    run.add_argument("--seed", type=int, default=7, help="synthetic: seed (same seed, same events)")
    run.add_argument(
        "--bad-share",
        type=share,
        default=0.0,
        help="synthetic: share of extra, deliberately malformed messages (shows dead-lettering)",
    )
    run.add_argument(
        "--start",
        type=start_time,
        default=None,
        help="synthetic: window start (ISO 8601, e.g. 2026-01-01T00:00:00Z) instead of now - duration",
    )
    run.add_argument(
        "--rate", type=non_negative, default=0.0, help="events/s the source sends (0: as fast as taken)"
    )
    run.add_argument("--file", type=Path, help="jsonl: one CloudEvent per line (examples/events.jsonl)")
    run.add_argument(
        "--transport",
        choices=("inproc", "http"),
        default="inproc",
        help="how Durable client signals reach the entities: in process, or over the extension's "
        "webhook API on loopback HTTP",
    )
    run.add_argument(
        "--partitions", type=positive_int, default=32, help="Event Hubs partitions (synthetic, jsonl)"
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".devhost"),
        help="where the run's log, checkpoints, entity states and parked batches live (resumable)",
    )
    run.add_argument("--fresh", action="store_true", help="forget the state dir's previous run")
    run.add_argument(
        "--report-dir", type=Path, default=Path("reports"), help="where the JSON report and PNG go"
    )
    run.add_argument("--no-report", action="store_true", help="write no report files")
    run.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="a local.settings.json to use (default: ./local.settings.json when it exists)",
    )
    run.add_argument("--no-local-settings", action="store_true", help="ignore ./local.settings.json")
    run.add_argument(
        "--entity-workers",
        type=positive_int,
        default=4,
        help="entity batches run at once (the Durable extension's concurrency on one instance)",
    )
    run.add_argument(
        "--max-lag",
        type=positive_int,
        default=4096,
        help="backpressure: events the source may run ahead of the checkpoints",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (a bar on a terminal; a plain line every few seconds otherwise)",
    )
    run.add_argument(
        "--progress-every",
        type=positive,
        default=PLAIN_PROGRESS_S,
        metavar="SECONDS",
        help="off a terminal (a log, a pipe): how often the plain progress line is printed",
    )
    run.add_argument(
        "--serve",
        action="store_true",
        help="serve the live dashboard (/dashboard/, URL printed at start) and the HTTP functions "
        "(/api/...) during the run, and keep serving both after it until Ctrl-C",
    )
    run.add_argument(
        "--redeliver-share",
        type=share,
        default=0.0,
        help="share of trigger batches redelivered (a tail of them, before the checkpoint): at-least-once",
    )
    run.add_argument(
        "--show-trace",
        action="store_true",
        help="record spans in memory and print one event's trace, ingest to Cosmos write",
    )
    run.add_argument(
        "--retry-delay-scale",
        type=positive,
        default=1.0,
        help="scale the host's retry waits (e.g. 0.01 to see a batch parked in seconds, not minutes)",
    )
    run.add_argument(
        "--summary",
        action="store_true",
        help="after the run: the players' responses, then the daily summary orchestration; print its report",
    )
    run.add_argument(
        "--summary-day",
        type=day_arg,
        default=None,
        help="with --summary: the UTC day (YYYY-MM-DD) to summarise (default: the window's last full day)",
    )
    run.add_argument(
        "--holdout-share",
        default=None,
        metavar="TYPE=SHARE,...",
        help="HOLDOUT_SHARE for the run when local.settings.json names none (default with --summary: "
        "0.5 for every action type, so the summary compares two groups; without: the app's default)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    report = sub.add_parser(
        "summary", help="print a day's summary (table and PNG) from Cosmos, the HTTP API or a report file"
    )
    report.add_argument("--day", type=day_arg, help="the UTC day, read from the summaries container")
    report.add_argument(
        "--settings", type=Path, help="local.settings.json with COSMOS_* (default ./local.settings.json)"
    )
    report.add_argument("--url", help="GET /api/summaries/{day} of a running app")
    report.add_argument(
        "--json", help="a report file: reports/summary-<day>.json (from run --summary; default: the newest)"
    )
    report.add_argument("--png", type=Path, help="where the PNG goes (default reports/summary-<day>.png)")
    whatif = sub.add_parser(
        "whatif",
        help="replay recorded events through the current configuration and a candidate; report the change",
        description="Replay recorded events through the real entity code twice, with the current "
        "settings and with a candidate (a model, rule overrides, a holdout table), on a deterministic "
        "clock, and report what changes: decisions added and removed by type and rule, score "
        "distributions, rejections per rule, the estimated effect. Writes reports/whatif-<stamp>.json "
        "and .png.",
        formatter_class=_Help,
    )
    what = whatif.add_mutually_exclusive_group(required=True)
    what.add_argument("--events", type=Path, help="a JSON-lines file of CloudEvents (examples/events.jsonl)")
    what.add_argument("--state-dir", type=Path, help="a devhost run's state dir: replays its Event Hubs log")
    what.add_argument(
        "--export", type=Path, help="a day of the retraining export: a folder of hour-HH.jsonl files, or one"
    )
    whatif.add_argument(
        "--model", type=Path, help="candidate model: an ONNX file with model_card.json beside it"
    )
    whatif.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="candidate rule override, repeatable: min_score.break_suggestion=0.6, min_score=0.6, "
        "daily_cap=2, disabled=bonus_offer, cooldown_ms.help_offer=1800000, stale_after_ms=..., "
        "warm_up_events=... (the field names of shared.policy.Rules; by default none: the candidate is "
        "the current configuration)",
    )
    whatif.add_argument(
        "--holdout", metavar="TYPE=SHARE,...", help="candidate holdout table (as HOLDOUT_SHARE)"
    )
    whatif.add_argument(
        "--lag-ms",
        type=_number(int, 0, None, "a whole number of 0 or more"),
        default=1000,
        help="--events: the replay's clock is each event's time plus this (the file has no enqueued times)",
    )
    whatif.add_argument(
        "--settings",
        type=Path,
        help="local.settings.json of the current configuration (default: ./local.settings.json, and with "
        "--state-dir the decision settings the recorded run used: its holdout, challenger, cap, kill switch)",
    )
    whatif.add_argument(
        "--summary-day",
        type=day_arg,
        help="take the uplift estimates from this day's summary index in Cosmos (the settings' COSMOS_*)",
    )
    whatif.add_argument(
        "--summary-json",
        type=Path,
        help="daily summary report with uplift estimates (default: the newest in --report-dir)",
    )
    whatif.add_argument(
        "--report-dir", type=Path, default=Path("reports"), help="where the JSON report and PNG go"
    )
    whatif.add_argument("--no-report", action="store_true", help="print the numbers only, write no files")
    whatif.add_argument(
        "--fail-on-change",
        action="store_true",
        help="exit 3 when the candidate adds, removes or changes a decision",
    )
    parked = sub.add_parser("parked", help="list or re-inject the trigger batches the app parked")
    parked.add_argument("action", choices=("list", "reinject"), help="list them, or put them back in the log")
    parked.add_argument("--state-dir", type=Path, default=Path(".devhost"), help="the run's state dir")
    return p


def _parked(args: argparse.Namespace) -> int:
    from devhost.servers.node import ServerError
    from devhost.storage import parked

    if not (args.state_dir / "devhost.sqlite").exists():
        print(f"devhost: {args.state_dir} holds no devhost run", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            lines = parked.list_parked(args.state_dir)
            print("\n".join(lines) if lines else "no parked batches")
            return 0
        done = parked.reinject(args.state_dir)
    except ServerError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    print(
        f"re-injected {done.batches} batch(es), {done.events} event(s); run the same "
        "`python -m devhost run ...` again (without --fresh) to process them"
    )
    return 0


def _summary(args: argparse.Namespace) -> int:
    from devhost import summary_report
    from devhost.functions_host.settings import LOCAL_SETTINGS

    if args.day is None and args.url is None and args.json is None:
        # No source named: the newest report a `run --summary` wrote.
        newest = max(Path("reports").glob("summary-*.json"), key=lambda p: p.stat().st_mtime, default=None)
        if newest is None:
            print("devhost summary: no reports/summary-<day>.json yet (run --summary first); or --day/--url")
            return 2
        args.json = str(newest)
    argv = [f"--{k}={v}" for k in ("day", "url", "json", "png") if (v := getattr(args, k)) is not None]
    settings = args.settings or (LOCAL_SETTINGS if args.day and LOCAL_SETTINGS.exists() else None)
    if settings is not None:
        argv.append(f"--settings={settings}")
    return summary_report.main(argv)


def _whatif(args: argparse.Namespace) -> int:
    from devhost import whatif, whatif_report
    from devhost.functions_host.settings import LOCAL_SETTINGS, SettingsError, load_local_settings

    try:
        path = args.settings or (LOCAL_SETTINGS if LOCAL_SETTINGS.exists() else None)
        if args.settings is not None and not args.settings.is_file():
            raise whatif.WhatIfError(f"--settings {args.settings}: no such file")
        settings = load_local_settings(path) if path is not None else None
        summary = (
            None if args.summary_day else args.summary_json or whatif_report.newest_summary(args.report_dir)
        )
        report = whatif.run(
            events=args.events,
            state_dir=args.state_dir,
            export=args.export,
            settings=settings,
            model=args.model,
            rules=args.rule,
            holdout=args.holdout,
            lag_ms=args.lag_ms,
            summary_json=summary,
            summary_day=args.summary_day,
            settings_explicit=args.settings is not None,
        )
    except (whatif.WhatIfError, SettingsError) as exc:
        print(f"devhost whatif: {exc}", file=sys.stderr)
        return 2
    print(whatif_report.render(report))
    if not args.no_report:
        json_path, png = whatif_report.write_report(report, args.report_dir)
        print(f"\n  report: {json_path}\n          {png}")
    if args.fail_on_change and whatif.changed(report):
        return 3
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _check_run(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say about ``run``'s options together: one line and exit 2."""
    commands = next(a for a in p._actions if a.dest == "command").choices
    run = typing.cast(dict[str, argparse.ArgumentParser], commands)["run"]
    if args.source == "jsonl" and args.file is None:
        run.error("--source jsonl needs --file FILE (one CloudEvent per line, e.g. examples/events.jsonl)")
    if args.file is not None:
        if args.source != "jsonl":
            run.error(f"--file is read with --source jsonl only (the source is {args.source})")
        if not args.file.is_file():
            run.error(f"--file {args.file}: no such file")
    if args.settings is not None and not args.settings.is_file():
        run.error(f"--settings {args.settings}: no such file")
    if args.state_dir.exists() and not args.state_dir.is_dir():
        run.error(f"--state-dir {args.state_dir} is a file, not a folder")
    if args.summary_day is not None and not args.summary:
        run.error("--summary-day needs --summary")
    if getattr(args, "holdout_share", None):
        from shared.config import ConfigError, parse_holdout_share

        try:
            parse_holdout_share(args.holdout_share)
        except ConfigError as exc:
            run.error(f"--holdout-share: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "run":
        _check_run(p, args)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "parked":
        return _parked(args)
    if args.command == "summary":
        return _summary(args)
    if args.command == "whatif":
        return _whatif(args)
    from devhost import report
    from devhost.eventhubs.producers import SourceError
    from devhost.functions_host.indexing import UnsupportedBinding
    from devhost.functions_host.settings import SettingsError
    from devhost.functions_host.worker import FunctionLoadError
    from devhost.host import Host, RunConfig, RunError, RunResult
    from devhost.servers.node import ServerError

    cfg = RunConfig(
        source=args.source,
        players=args.players,
        duration_s=args.duration,
        seed=args.seed,
        bad_share=args.bad_share,
        redeliver_share=args.redeliver_share,
        start_ms=args.start,
        rate=args.rate,
        file=args.file,
        transport=args.transport,
        partitions=args.partitions,
        state_dir=args.state_dir,
        fresh=args.fresh,
        report_dir=None if args.no_report else args.report_dir,
        settings_path=args.settings,
        use_local_settings=not args.no_local_settings,
        entity_workers=args.entity_workers,
        max_lag=args.max_lag,
        progress=not args.no_progress,
        progress_every_s=args.progress_every,
        serve=args.serve,
        retry_delay_scale=args.retry_delay_scale,
        summary=args.summary,
        summary_day=args.summary_day,
        holdout_share=args.holdout_share or (DEMO_HOLDOUT_SHARE if args.summary else None),
    )
    exporter = None
    if args.show_trace:
        from devhost import traces

        exporter = traces.install()
    printed: list[bool] = []

    def show(result: RunResult) -> None:
        print()
        print(report.table(result.summary))
        if exporter is not None:
            from devhost import traces

            trace = traces.action_trace(exporter.get_finished_spans())
            if trace:
                print("\n  one event's trace (span, duration, attributes):")
                print(traces.render(trace))
            else:
                print(
                    "\n  no trace to show: no action came from an event that carried a traceparent "
                    "(synthetic events carry one; try more players or a longer --duration)"
                )
        if result.report_json:
            print(f"\n  report: {result.report_json}\n          {result.report_png}")
        if result.daily_summary is not None:
            from devhost import summary_report

            daily = result.daily_summary
            if daily.get("index"):
                print()
                print(summary_report.render_table(daily["index"]))
                if result.summary_png:
                    print(f"\n  summary chart: {result.summary_png}")
            else:
                state = f"{daily.get('runtimeStatus')} {daily.get('error', '')}"
                print(f"\n  daily summary {daily.get('day')}: {state}")
        printed.append(True)

    host: Host | None = None
    # SIGTERM stops the devhost like Ctrl-C (a job started with `&` by a script ignores SIGINT).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        host = Host(cfg)  # inside the try: a RunError from its checks is one line too
        host.on_finished = show
        result = host.run()
    except (RunError, SettingsError, UnsupportedBinding, SourceError, ServerError, FunctionLoadError) as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if host is not None and host.finished is not None:
            print("devhost: stopped serving", file=sys.stderr)
            return 0
        print("devhost: interrupted; run again with the same options to resume", file=sys.stderr)
        return 130
    if not printed:
        show(result)
    return 0
