"""What-if replay, the report: the estimated effect from holdout data, the retraining export's rows
re-decided, the JSON report, its PNG and the printed table (``devhost.whatif`` runs the replay)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devhost.whatif import HIST_BINS, Config, WhatIfError, score_shift
from shared.policy import ACTION_TYPES

# -- estimated effect from holdout data ------------------------------------------------------------


def uplift_table(index: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per type, the uplift a daily summary measured (``summary.types[type].outcome``: ``uplift``,
    ``ci95``, ``p``, the two groups' closed decisions), where it has one. ``index`` is the summary's
    index document, or the file ``run --summary`` writes (``{"index": ...}``)."""
    if isinstance(index.get("index"), Mapping):
        index = index["index"]
    summary = index.get("summary")
    types = summary.get("types") if isinstance(summary, Mapping) else None
    out: dict[str, dict[str, Any]] = {}
    for t in ACTION_TYPES:
        entry = types.get(t) if isinstance(types, Mapping) else None
        outcome = entry.get("outcome") if isinstance(entry, Mapping) else None
        if not isinstance(outcome, Mapping):
            continue
        u = outcome.get("uplift")
        if not isinstance(u, int | float) or isinstance(u, bool):
            continue  # no closed decision in one of the groups: nothing measured
        row: dict[str, Any] = {"uplift": float(u), "outcome": outcome.get("name"), "p": outcome.get("p")}
        ci = outcome.get("ci95")
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
            row.update(low=float(ci[0]), high=float(ci[1]))
        for group in ("treated", "holdout"):
            g = outcome.get(group)
            if isinstance(g, Mapping):
                row[group] = {"n": g.get("n"), "met": g.get("met")}
        out[t] = row
    return out


def load_summary_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WhatIfError(f"--summary-json {path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise WhatIfError(f"--summary-json {path}: not a summary (a JSON object)")
    return data


def summary_from_cosmos(day: str, settings: Mapping[str, str] | None) -> dict[str, Any]:
    """The day's summary index document from the summaries container (the settings' Cosmos)."""
    import os

    from shared import config, summary, summary_store

    env = {**os.environ, **(settings or {})}
    try:
        docs = summary_store.read_day(config.load(env).cosmos, day)
    except config.ConfigError as exc:
        raise WhatIfError(f"--summary-day {day}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Cosmos unreachable, no container: one clear line
        raise WhatIfError(
            f"--summary-day {day}: cannot read the summaries container: {type(exc).__name__}"
        ) from None
    index = next((d for d in docs if d.get("id") == summary.index_id(day)), None)
    if index is None:
        raise WhatIfError(f"--summary-day {day}: no summary index for that day in the summaries container")
    return index


def estimated_effect(
    totals: Mapping[str, Any], index: Mapping[str, Any] | None, source: str | None
) -> dict[str, Any]:
    """Expected change in outcomes met, per type: the change in sent actions times the uplift the
    daily summary measured (treated minus holdout rate over closed decisions), with the change's
    interval from the uplift's 95% interval."""
    if index is None:
        return {
            "available": False,
            "reason": "no daily summary to take an uplift from (reports/summary-<day>.json, --summary-json "
            "or --summary-day)",
        }
    table = uplift_table(index)
    day = index.get("day") or (index.get("index") or {}).get("day")
    if not table:
        return {
            "available": False,
            "source": source,
            "day": day,
            "reason": "the summary has no uplift estimate (no type has closed decisions in both groups)",
        }
    types: dict[str, Any] = {}
    for t, u in table.items():
        delta = totals["candidate"]["sent"][t] - totals["baseline"]["sent"][t]
        row: dict[str, Any] = {"sentChange": delta, **u, "outcomesChange": round(delta * u["uplift"], 3)}
        if "low" in u:
            ends = sorted((delta * u["low"], delta * u["high"]))
            row["outcomesChangeInterval"] = [round(ends[0], 3), round(ends[1], 3)]
        types[t] = row
    return {
        "available": True,
        "source": source,
        "day": day,
        "types": types,
        "assumes": "each action added or removed moves its outcome by the uplift the holdout measured "
        "for its type (the added or removed ones are like the measured ones)",
    }


def newest_summary(report_dir: Path) -> Path | None:
    return max(report_dir.glob("summary-*.json"), key=lambda p: p.stat().st_mtime, default=None)


# -- the export ------------------------------------------------------------------------------------


def replay_export(
    features: list[str], rows: Sequence[tuple[str, int, dict[str, Any]]], base: Config, cand: Config
) -> dict[str, Any]:
    """Each exported (sent) row re-decided by the real policy on both models' scores, in a neutral
    context (the export keeps no player, time or history)."""
    from shared.policy import PolicyContext, decide

    for cfg in (base, cand):
        if list(cfg.model.features) != features and sorted(cfg.model.features) != sorted(features):
            raise WhatIfError(f"the export's features differ from those of model {cfg.version}")
    side_scores: dict[str, dict[str, list[float]]] = {
        "baseline": {t: [] for t in ACTION_TYPES},
        "candidate": {t: [] for t in ACTION_TYPES},
    }
    moves: Counter[tuple[str, str, str]] = Counter()  # (recorded action, candidate decision, rule)
    base_agrees, score_mismatch = 0, 0
    versions: Counter[str] = Counter()
    for _, _, row in rows:
        named = dict(zip(features, row["features"], strict=True))
        versions[str(row.get("modelVersion"))] += 1
        ctx = PolicyContext(0, 0, {}, False, 10**9, named, None)
        picks = {}
        for name, cfg in (("baseline", base), ("candidate", cand)):
            scores = cfg.model.score_vector([named[f] for f in cfg.model.features])
            for t in ACTION_TYPES:
                side_scores[name][t].append(float(scores.get(t, 0.0)))
            picks[name] = (decide(scores, ctx, cfg.rules), scores)
        (bd, bs), (cd, _) = picks["baseline"], picks["candidate"]
        base_agrees += int(bd.action_type == row["action"])
        if row.get("modelVersion") == base.version and isinstance(row.get("score"), int | float):
            score_mismatch += int(abs(bs.get(row["action"], 0.0) - row["score"]) > 1e-5)
        got = cd.action_type or "none"
        rule = (
            ""
            if got == row["action"]
            else next((r for a, r in cd.suppressed if a == row["action"]), None)
            or ("ranking" if cd.action_type else "min_score")
        )
        moves[(row["action"], got, rule)] += 1
    by: dict[str, Any] = {}
    for t in ACTION_TYPES:
        kept = moves[(t, t, "")]
        to: dict[str, int] = {}
        rules: dict[str, int] = {}
        for (a, got, rule), n in moves.items():
            if a == t and got != t:
                to[got] = to.get(got, 0) + n
                rules[rule] = rules.get(rule, 0) + n
        by[t] = {
            "rows": sum(n for (a, _, _), n in moves.items() if a == t),
            "kept": kept,
            "changedTo": to,
            "byRule": rules,
        }
    return {
        "rows": len(rows),
        "modelVersions": dict(versions),
        "baselineReproducesRecordedAction": base_agrees,
        "recordedScoreMismatches": score_mismatch,
        "types": by,
        "scores": score_shift(side_scores["baseline"], side_scores["candidate"]),
    }


# -- the report ------------------------------------------------------------------------------------


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def write_report(report: dict[str, Any], report_dir: Path) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    name = f"whatif-{stamp()}"
    path = report_dir / f"{name}.json"
    n = 1
    while path.exists():  # two replays in the same second: never overwrite
        name = f"whatif-{stamp()}-{n}"
        path, n = report_dir / f"{name}.json", n + 1
    png = report_dir / f"{name}.png"
    report["png"] = str(png)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    write_png(report, png)
    return path, png


def write_png(report: Mapping[str, Any], path: Path) -> Path:
    """Left: decisions per type, baseline and candidate (sent, holdout); middle: score histograms per
    type (baseline filled, candidate outlined); right: rejections per rule, baseline and candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(15, 4.8))
    xs = list(range(len(ACTION_TYPES)))
    labels = [t.replace("_", "\n") for t in ACTION_TYPES]
    scores = report["scores"]
    if "baseline" in report.get("totals", {}):
        tb, tc = report["totals"]["baseline"], report["totals"]["candidate"]
        for dx, tot, name, color in ((-0.2, tb, "baseline", "#607d8b"), (0.2, tc, "candidate", "#1e88e5")):
            sent = [tot["sent"][t] for t in ACTION_TYPES]
            held = [tot["holdout"][t] for t in ACTION_TYPES]
            left.bar([x + dx for x in xs], sent, 0.4, color=color, label=f"{name}: sent")
            left.bar(
                [x + dx for x in xs], held, 0.4, bottom=sent, color=color, alpha=0.4, label=f"{name}: holdout"
            )
        left.set_ylabel("decisions")
    else:
        ex = report["export"]["types"]
        left.bar(
            [x - 0.2 for x in xs],
            [ex[t]["rows"] for t in ACTION_TYPES],
            0.4,
            color="#607d8b",
            label="recorded",
        )
        left.bar(
            [x + 0.2 for x in xs],
            [ex[t]["kept"] for t in ACTION_TYPES],
            0.4,
            color="#1e88e5",
            label="candidate keeps",
        )
        left.set_ylabel("exported rows (sent actions)")
    left.set_xticks(xs, labels)
    left.set_title("decisions: baseline vs candidate")
    left.legend(fontsize=7)
    edges = [i / HIST_BINS for i in range(HIST_BINS)]
    colors = ("#e53935", "#43a047", "#fb8c00")
    for t, color in zip(ACTION_TYPES, colors, strict=True):
        b, c = scores[t]["baseline"]["histogram"], scores[t]["candidate"]["histogram"]
        mid.bar(edges, b, 1 / HIST_BINS, align="edge", color=color, alpha=0.25, label=f"{t} baseline")
        mid.step([*edges, 1.0], [*c, c[-1] if c else 0], where="post", color=color, label=f"{t} candidate")
    mid.set_yscale("symlog")
    mid.set_xlabel("score")
    mid.set_ylabel("scored moments")
    mid.set_title("score distribution per type")
    mid.legend(fontsize=7)
    rej = report.get("rejections", {})
    names = list(rej)
    if names:
        ys = list(range(len(names)))
        right.barh(
            [y - 0.2 for y in ys], [rej[r]["baseline"] for r in names], 0.4, color="#607d8b", label="baseline"
        )
        right.barh(
            [y + 0.2 for y in ys],
            [rej[r]["candidate"] for r in names],
            0.4,
            color="#1e88e5",
            label="candidate",
        )
        right.set_yticks(ys, names)
        right.legend(fontsize=7)
    else:
        right.text(
            0.5, 0.5, "no per-rule rejections\n(export rows: no entity context)", ha="center", va="center"
        )
    right.set_title("rejections per rule")
    fig.suptitle(f"what-if: {report['source']['kind']} {report['source'].get('path', '')}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def render(report: Mapping[str, Any]) -> str:
    """The report's numbers as a short table (what the command prints)."""
    src, base, cand = report["source"], report["baseline"], report["candidate"]
    n = src.get("messages", src.get("rows", 0))
    lines = [f"what-if replay of {src['kind']} {src.get('path', '')}: {n} records"]
    over = f"; overrides {', '.join(cand['overrides'])}" if cand["overrides"] else ""
    lines.append(f"  baseline: model {base['modelVersion']}; candidate: model {cand['modelVersion']}{over}")
    if "export" in report:
        ex = report["export"]
        same = ex["baselineReproducesRecordedAction"]
        lines.append(f"  rows {ex['rows']}, the baseline re-decides the recorded action on {same}")
        for t in ACTION_TYPES:
            e = ex["types"][t]
            lines.append(
                f"  {t:17} rows {e['rows']:6}  kept {e['kept']:6}  "
                f"changed {dict(e['changedTo'])} by rule {dict(e['byRule'])}"
            )
    else:
        tb, tc = report["totals"]["baseline"], report["totals"]["candidate"]
        lines.append(f"  {'type':17} {'sent':>13} {'holdout':>11} {'added':>6} {'removed':>8}  rules")
        for t in ACTION_TYPES:
            a, r = report["added"][t], report["removed"][t]
            why = {
                **{f"+{k}": v for k, v in a["byRule"].items()},
                **{f"-{k}": v for k, v in r["byRule"].items()},
            }
            sent = f"{tb['sent'][t]:>5} -> {tc['sent'][t]:<5}"
            held = f"{tb['holdout'][t]:>3} -> {tc['holdout'][t]:<4}"
            lines.append(f"  {t:17} {sent} {held} {a['total']:>6} {r['total']:>8}  {why or ''}")
        changed = {r: v["change"] for r, v in report["rejections"].items() if v["change"]}
        lines.append(f"  rejections changed by rule: {changed or 'none'}")
    for t in ACTION_TYPES:
        s = report["scores"][t]
        if s["baseline"]["n"]:
            b50, c50 = s["baseline"]["quantiles"]["p50"], s["candidate"]["quantiles"]["p50"]
            lines.append(f"  score {t:17} median {b50} -> {c50} (mean shift {s['shift']['mean']:+.4f})")
    eff = report["effect"]
    if eff.get("available"):
        for t, e in eff["types"].items():
            ci = e.get("outcomesChangeInterval")
            band = f" (95% {ci[0]:+.2f} .. {ci[1]:+.2f})" if ci else ""
            lines.append(
                f"  effect {t:17} sent {e['sentChange']:+d} x uplift {e['uplift']:+.3f} "
                f"= {e['outcomesChange']:+.2f} outcomes met{band}"
            )
    else:
        lines.append(f"  estimated effect: none ({eff.get('reason')})")
    return "\n".join(lines)
