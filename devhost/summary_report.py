"""Print a day's summary as a table and draw it as a PNG (actions and acceptance per type, calibration).

Where the summary comes from, one of:

    # the app's HTTP API (Azure: the function key in the URL, ?code=...)
    .venv/bin/python -m scripts.summary_report --url "https://<app>.azurewebsites.net/api/summaries/2026-11-26?code=..."
    # the summaries container, with the settings of a local.settings.json (or COSMOS_* in the environment)
    .venv/bin/python -m scripts.summary_report --day 2026-11-26 --settings local.settings.json
    # a file the devhost wrote (python -m devhost run ... --summary writes reports/summary-<day>.json)
    .venv/bin/python -m scripts.summary_report --json reports/summary-2026-11-26.json

The PNG goes to ``--png`` (default ``reports/summary-<day>.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.policy import ACTION_TYPES


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def _secs(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:6.0f}s" if ms < 600_000 else f"{ms / 60_000:5.1f}m"


def render_table(index: Mapping[str, Any]) -> str:
    """The index document's summary as text: one line per action type, then rejections and calibration."""
    s = index["summary"]
    lines = [
        f"  daily summary {index['day']} (UTC)   documents {s['documents']}   "
        f"retraining rows exported {s['exportedRows']}",
        "",
        f"  {'action':<17} {'sent':>6} {'accepted':>9} {'dismissed':>10} {'no resp.':>9} "
        f"{'accept.':>8} {'response':>9} {'median t':>9} {'suppressed':>11}",
    ]
    for t in ACTION_TYPES:
        r = s["types"][t]
        lines.append(
            f"  {t:<17} {r['sent']:>6} {r['accepted']:>9} {r['dismissed']:>10} {r['noResponse']:>9} "
            f"{_pct(r['acceptanceRate']):>8} {_pct(r['responseRate']):>9} {_secs(r['medianResponseMs']):>9} "
            f"{r['suppressed']:>11}"
        )
    lines += ["", "  rejections by rule (suppressed candidates)"]
    for t in ACTION_TYPES:
        rules = s["types"][t]["rejectionsByRule"]
        text = ", ".join(f"{k} {v}" for k, v in sorted(rules.items(), key=lambda kv: -kv[1])) or "none"
        lines.append(f"  {t:<17} {text}")
    lines += ["", "  calibration: score decile -> actions sent, mean score, acceptance rate"]
    for t in ACTION_TYPES:
        cells = [
            f"[{c['low']:.1f},{c['high']:.1f}) n={c['count']} s={c['meanScore']:.2f} "
            f"a={_pct(c['acceptanceRate']).strip()}"
            for c in s["types"][t]["calibration"]
            if c["count"]
        ]
        lines.append(f"  {t:<17} " + ("; ".join(cells) if cells else "no actions"))
    return "\n".join(lines)


def write_png(index: Mapping[str, Any], path: Path) -> Path:
    """Left: actions sent per type (accepted / dismissed / no response) with the acceptance rate;
    right: the calibration curve (acceptance rate against mean score per decile, per type)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = index["summary"]["types"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    xs = range(len(ACTION_TYPES))
    acc = [s[t]["accepted"] for t in ACTION_TYPES]
    dis = [s[t]["dismissed"] for t in ACTION_TYPES]
    none = [s[t]["noResponse"] for t in ACTION_TYPES]
    left.bar(xs, acc, color="#2e7d32", label="accepted")
    left.bar(xs, dis, bottom=acc, color="#c62828", label="dismissed")
    left.bar(
        xs, none, bottom=[a + d for a, d in zip(acc, dis, strict=True)], color="#9e9e9e", label="no response"
    )
    left.set_xticks(list(xs), [t.replace("_", "\n") for t in ACTION_TYPES])
    left.set_ylabel("actions sent")
    left.set_title(f"actions on {index['day']} (UTC)")
    rate_axis = left.twinx()
    rates = [s[t]["acceptanceRate"] for t in ACTION_TYPES]
    rate_axis.plot(
        list(xs), [r if r is not None else float("nan") for r in rates], "ko-", label="acceptance rate"
    )
    rate_axis.set_ylim(0, 1)
    rate_axis.set_ylabel("acceptance rate (accepted / sent)")
    handles = left.get_legend_handles_labels()[0] + rate_axis.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    right.plot([0, 1], [0, 1], ":", color="grey", label="score = acceptance")
    for t in ACTION_TYPES:
        pts = [(c["meanScore"], c["acceptanceRate"], c["count"]) for c in s[t]["calibration"] if c["count"]]
        if pts:
            right.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=t)
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("mean model score (per score decile)")
    right.set_ylabel("acceptance rate")
    right.set_title("calibration: score against acceptance")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _from_cosmos(day: str, settings_file: Path | None) -> dict[str, Any]:
    from devhost.functions_host.settings import load_local_settings
    from shared import config, summary, summary_store

    env = dict(os.environ)
    if settings_file is not None:
        env.update(load_local_settings(settings_file))
    docs = summary_store.read_day(config.load(env).cosmos, day)
    index = next((d for d in docs if d.get("id") == summary.index_id(day)), None)
    if index is None:
        raise SystemExit(f"no summary index for {day} in the summaries container")
    return index


def load_index(args: argparse.Namespace) -> dict[str, Any]:
    if args.json:
        data = json.loads(Path(args.json).read_text(encoding="utf-8"))
        return dict(data.get("index") or data)
    if args.url:
        with urllib.request.urlopen(args.url, timeout=30) as resp:  # noqa: S310 - an operator's URL
            data = json.loads(resp.read())
        if not data.get("index"):
            raise SystemExit(f"the summary is not complete: {data.get('runtimeStatus')}")
        return dict(data["index"])
    if not args.day:
        raise SystemExit("give --day (with Cosmos settings), --url or --json")
    return _from_cosmos(args.day, args.settings)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--day", help="YYYY-MM-DD: read the index document from the summaries container")
    p.add_argument("--settings", type=Path, help="a local.settings.json with COSMOS_* (with --day)")
    p.add_argument("--url", help="GET /api/summaries/{day} of a running app")
    p.add_argument("--json", help="a summary file the devhost wrote (reports/summary-<day>.json)")
    p.add_argument("--png", type=Path, help="where the PNG goes (default reports/summary-<day>.png)")
    args = p.parse_args(argv)
    index = load_index(args)
    print(render_table(index))
    png = write_png(index, args.png or Path("reports") / f"summary-{index['day']}.png")
    print(f"\n  chart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
