"""The devhost dashboard in a real browser, during and after a paced `devhost run --serve`.

Headless Debian Chromium driven by playwright-core (``tests/e2e/dashboard.spec.mjs``):
the page loads while the run is in flight and its events-in figure grows, after the run
its figures equal the run's summary (the JSON report), its elapsed time has stopped, its
charts draw every point (a lone one as a dot) with exact axis labels and a right axis for
signals and entity operations, it rounds numbers as the printed summary does (half to even),
the inspector shows a player's state and its decisions told apart (sent actions, holdout
decisions, suppressed decisions per rule, as the app's read API and the Cosmos documents say),
the last what-if report is shown, and erase removes the documents and the player from
"recently active". Then Ctrl-C stops the devhost (exit 0). The screenshots go to
``reports/dashboard.png`` and the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devhost.functions_host.settings import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SPEC = ROOT / "tests" / "e2e" / "dashboard.spec.mjs"
INSTALL = ROOT / "scripts" / "install-system-packages.sh"


def _chromium() -> Path:
    """Chromium, installed by the project's script when missing; skip only when that cannot work."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() == 0 or shutil.which("sudo"):
        proc = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=600)
        if CHROMIUM.exists():
            return CHROMIUM
        reason = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"{CHROMIUM} is missing and {INSTALL.name} could not install it: {reason[0]}")
    pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (not root, no sudo)")


def _playwright() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH (the project needs node/npm)")
    if not (ROOT / "node_modules" / "playwright-core" / "package.json").exists():
        pytest.fail("playwright-core is not installed: run `make setup` (npm ci)")


def _status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dashboard_in_a_browser(tmp_path: Path) -> None:
    chromium = _chromium()
    _playwright()
    state, reports, out = tmp_path / "state", tmp_path / "reports", tmp_path / "browser"
    cmd = [
        sys.executable,
        "-m",
        "devhost",
        "run",
        "--players",
        "30",
        "--duration",
        "1d",
        "--rate",
        "400",  # ~5,300 events paced over ~13 s: the browser sees the run in flight
        "--serve",
        "--no-local-settings",
        "--fresh",
        "--no-progress",
        "--state-dir",
        str(state),
        "--report-dir",
        str(reports),
    ]
    # A what-if report in the run's report folder: the page shows the last one.
    whatif = [
        sys.executable,
        "-m",
        "devhost",
        "whatif",
        "--events",
        "examples/events.jsonl",
        "--rule",
        "min_score=0.1",
    ]
    made = subprocess.run(
        [*whatif, "--report-dir", str(reports)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    stderr = (tmp_path / "devhost.stderr").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:  # keeps the pipe drained for the whole run
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("dashboard http"):
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(60), "no dashboard URL within 60 s"
        found = re.search(r"^dashboard (http://127\.0\.0\.1:\d+/dashboard/)$", "".join(lines), re.M)
        assert found, "".join(lines) + (tmp_path / "devhost.stderr").read_text()
        url = found.group(1)
        spec = subprocess.run(
            ["node", str(SPEC), url, str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=110,
            env={**os.environ, "CHROMIUM_PATH": str(chromium)},
        )
        shot = out / "dashboard.png"
        if shot.exists():
            (ROOT / "reports").mkdir(exist_ok=True)
            shutil.copyfile(shot, ROOT / "reports" / "dashboard.png")
        assert spec.returncode == 0, f"browser checks failed:\n{spec.stdout}\n{spec.stderr}"
        assert shot.exists() and shot.stat().st_size > 10_000

        # The page's figures (read after the run) against the run's JSON report.
        shown = json.loads((out / "result.json").read_text())["page_figures"]
        reports_written = sorted(reports.glob("devhost-*.json"))
        assert len(reports_written) == 1
        p = json.loads(reports_written[0].read_text())["pipeline"]
        assert shown["events_in"] == p["events_in"] > 0
        assert shown["signals"] == p["signals"]
        assert shown["entity_operations"] == p["entity_operations"]
        assert shown["actions_by_type"] == p["actions"]
        assert shown["rejections_by_rule"] == p["rejections"]
        assert shown["dropped_by_type"] == p["dropped"]
        assert shown["dead_letters_by_reason"] == p["dead_lettered"]
        assert shown["batches_parked"] == p["batches_parked"]
        assert shown["write_failures"] == p["write_failures"]
        assert shown["latency_p50"] == p["latency_ms"]["p50"]
        assert shown["latency_p99"] == p["latency_ms"]["p99"]

        # Numbers round half to even on the page, as Python's format() rounds the printed summary.
        result = json.loads((out / "result.json").read_text())
        rounding = result["rounding"]
        assert len(rounding) >= 10
        assert [r[1:] for r in rounding] == [[f"{v:,.0f}", f"{v:,.1f}", f"{v:,.2f}"] for v, *_ in rounding]
        assert {v: whole for v, whole, *_ in rounding}[412.5] == "412"  # half-up would say 413
        printed = re.search(r"events/s achieved\s+([\d,]+) ", "".join(lines))
        assert printed, "".join(lines)
        note = re.search(r"\(([\d,]+) events/s\)", result["finished_note"])
        assert note and note.group(1) == printed.group(1), (result["finished_note"], printed.group(0))

        # The devhost endpoints are read-only, loopback-only, and check the player id.
        base = url.removesuffix("/dashboard/")
        assert _status(base + "/devhost/api/figures", headers={"Host": "dashboard.example:80"}) == 421
        assert _status(base + "/devhost/api/figures", method="POST") == 405
        assert _status(base + "/devhost/api/players/x%20y/documents") == 400
        assert _status(base + "/dashboard/../devhost/host.py") == 404

        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=5)
        stderr.close()
    assert "stopped serving" in (tmp_path / "devhost.stderr").read_text()
