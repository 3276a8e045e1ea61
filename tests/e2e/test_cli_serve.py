"""`python -m devhost run --serve` as a user runs it: summary and report first, then serving, then Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devhost.functions_host.settings import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_writes_the_summary_first_and_ctrl_c_stops_cleanly(tmp_path: Path, stop: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "devhost",
        "run",
        "--players",
        "8",
        "--duration",
        "1h",
        "--fresh",
        "--no-progress",
        "--serve",
        "--no-local-settings",
        "--state-dir",
        str(tmp_path / "s"),
        "--report-dir",
        str(tmp_path / "r"),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = ""
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while "serving http" not in out and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out += line
    url = re.search(r"serving (http://127\.0\.0\.1:\d+)/api/", out)
    assert url, out
    assert "events in" in out and "report:" in out  # the summary and the report came before serving
    assert list((tmp_path / "r").glob("devhost-*.json"))
    with urllib.request.urlopen(url.group(1) + "/api/health", timeout=10) as resp:
        assert json.loads(resp.read())["status"] == "ok"
    started = time.monotonic()
    proc.send_signal(stop)
    rc = proc.wait(timeout=30)
    assert rc == 0 and time.monotonic() - started < 30
    assert "stopped serving" in (proc.stderr.read() if proc.stderr else "")
