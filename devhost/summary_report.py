"""Print a day's summary as a table and draw it as a PNG (actions and acceptance per type, calibration,
the holdout comparison's uplift per type, the challenger in shadow).

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


def _num(x: float | None, fmt: str = "+.3f") -> str:
    return "-" if x is None else format(x, fmt)


def uplift_lines(s: Mapping[str, Any]) -> list[str]:
    """Per type: treated and holdout decisions (closed ones: n and the outcome's rate), the uplift, its
    95% interval (Newcombe), the two-sided p-value and the decisions whose window is still open."""
    lines = [
        "  outcomes: treated vs holdout over closed decisions (uplift = rate difference, 95% Newcombe CI)",
        f"  {'action':<17} {'outcome':<16} {'treated n':>9} {'rate':>6} {'holdout n':>9} {'rate':>6} "
        f"{'uplift':>7} {'95% CI':>17} {'p':>8} {'open':>5}",
    ]
    for t in ACTION_TYPES:
        o = s["types"][t].get("outcome")
        if not o:
            lines.append(f"  {t:<17} (no outcome figures: a summary from before outcomes were tracked)")
            continue
        tr, ho = o["treated"], o["holdout"]
        ci = f"[{o['ci95'][0]:+.3f}, {o['ci95'][1]:+.3f}]" if o.get("ci95") else "-"
        p = "-" if o.get("p") is None else (f"{o['p']:.4f}" if o["p"] >= 1e-4 else "<0.0001")
        lines.append(
            f"  {t:<17} {o['name']:<16} {tr['n']:>9} {_num(tr['rate'], '.3f'):>6} {ho['n']:>9} "
            f"{_num(ho['rate'], '.3f'):>6} {_num(o['uplift']):>7} {ci:>17} {p:>8} "
            f"{tr['open'] + ho['open']:>5}"
        )
    untracked = sum(s["types"][t].get("outcome", {}).get("untracked", 0) for t in ACTION_TYPES)
    if untracked:
        lines.append(
            f"  ({untracked} decisions without a group or outcome, from before outcomes were tracked)"
        )
    return lines


def challenger_lines(s: Mapping[str, Any]) -> list[str]:
    """The challenger against the champion on the same triggers, when one ran in shadow."""
    ch = s.get("challenger")
    if not ch or not ch.get("triggers"):
        return ["  challenger in shadow: none this day (CHALLENGER_MODEL not set)"]
    versions = ", ".join(f"{k.replace('|', ' vs ')}" for k in sorted(ch["versions"])) or "-"
    lines = [
        f"  challenger in shadow ({versions}): {ch['triggers']} triggers scored by both, "
        f"agreement {_pct(ch['agreementRate']).strip()}",
        f"  {'action':<17} {'champion picks':>14} {'challenger picks':>16} {'both':>6} {'score corr.':>11} "
        f"{'mean score (champion / challenger)':>36}",
    ]
    for t in ACTION_TYPES:
        x = ch["types"][t]
        means = f"{_num(x['meanChampionScore'], '.3f')} / {_num(x['meanChallengerScore'], '.3f')}"
        lines.append(
            f"  {t:<17} {x['championPicks']:>14} {x['challengerPicks']:>16} {x['bothPicked']:>6} "
            f"{_num(x['scoreCorrelation'], '.3f'):>11} {means:>36}"
        )
    differ = ", ".join(f"{k} {v}" for k, v in sorted(ch["differByRule"].items(), key=lambda kv: -kv[1]))
    lines.append(f"  where they differ, by rule: {differ or 'nowhere'}")
    return lines


def render_table(index: Mapping[str, Any]) -> str:
    """The index document's summary as text: one line per action type, then rejections, calibration,
    the holdout comparison and the challenger."""
    s = index["summary"]
    final = index.get("final")
    state = "" if final is None else ("   final" if final else f"   not final (until {index.get('finalAt')})")
    lines = [
        f"  daily summary {index['day']} (UTC)   documents {s['documents']}   "
        f"retraining rows exported {s['exportedRows']}{state}",
        f"  run {index.get('run', '-')}   as of {index.get('asOf') or '-'}",
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
    lines += ["", *uplift_lines(s), "", *challenger_lines(s)]
    return "\n".join(lines)


def write_png(index: Mapping[str, Any], path: Path) -> Path:
    """Left: actions sent per type (accepted / dismissed / no response) with the acceptance rate;
    right: the calibration curve (acceptance rate against mean score per decile, per type)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = index["summary"]["types"]
    fig, (left, right, third) = plt.subplots(1, 3, figsize=(18, 4.8))
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
    _uplift_panel(third, s)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _uplift_panel(ax: Any, s: Mapping[str, Any]) -> None:
    """Uplift per type with its 95% interval (types without closed decisions in both groups: no bar)."""
    xs = list(range(len(ACTION_TYPES)))
    for x, t in zip(xs, ACTION_TYPES, strict=True):
        o = s[t].get("outcome") or {}
        if o.get("uplift") is None:
            ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
            continue
        low, high = o["ci95"]
        ax.errorbar(
            [x],
            [o["uplift"]],
            yerr=[[o["uplift"] - low], [high - o["uplift"]]],
            fmt="o",
            capsize=6,
            color="#1565c0",
        )
        ax.annotate(
            f"n={o['treated']['n']}/{o['holdout']['n']}", (x, high), textcoords="offset points",
            xytext=(0, 4), ha="center", fontsize=8,
        )  # fmt: skip
    ax.axhline(0, color="grey", linestyle=":")
    ax.set_xticks(xs, [t.replace("_", "\n") for t in ACTION_TYPES])
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylabel("uplift: outcome rate treated - holdout")
    ax.set_title("holdout comparison (95% interval; n treated/holdout)")


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
