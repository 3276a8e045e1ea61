"""checkov (offline) over bicep/: no failed check, every skip justified.

checkov's pinned dependencies clash with the app's, so it lives in its own
virtualenv: `.venv-iac` built from requirements-iac.txt (the Makefile's
iac-tools target). CHECKOV_BIN overrides the location. A missing checkov is a
failure, not a skip: CI must install it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.iac

REPO = Path(__file__).resolve().parents[2]
BICEP = REPO / "bicep"
CONFIG = BICEP / ".checkov.yaml"
DEFAULT_BIN = REPO / ".venv-iac" / "bin" / "checkov"
CHECK_ID = re.compile(r"^\s*-\s*(CKV2?_[A-Z]+_\d+)\b(.*)$")


def checkov_bin() -> Path:
    path = Path(os.environ.get("CHECKOV_BIN", DEFAULT_BIN))
    if not path.is_file():
        pytest.fail(
            f"checkov not found at {path}. Install it with `make iac-tools` "
            "(python3.11 -m venv .venv-iac && .venv-iac/bin/pip install -r requirements-iac.txt) "
            "or point CHECKOV_BIN at a checkov executable.",
            pytrace=False,
        )
    return path


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_"))}
    env.update(
        BC_SKIP_MAPPING="TRUE",  # no policy-metadata download
        CKV_SKIP_PACKAGE_UPDATE_CHECK="true",  # no PyPI version check
        CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false",
        LOG_LEVEL="WARNING",
    )
    return env


def skipped_checks(config_text: str) -> dict[str, str]:
    """skip-check entries of .checkov.yaml -> their justification comment."""
    entries: dict[str, str] = {}
    in_skip = False
    for line in config_text.splitlines():
        if re.match(r"^skip-check:\s*$", line):
            in_skip = True
            continue
        if in_skip and re.match(r"^\S", line):
            in_skip = False
        match = CHECK_ID.match(line) if in_skip else None
        if match:
            comment = match.group(2).strip()
            entries[match.group(1)] = comment[1:].strip() if comment.startswith("#") else ""
    return entries


def failed_checks(report: dict | list) -> list[str]:
    reports = report if isinstance(report, list) else [report]
    failed = []
    for rep in reports:
        for check in rep.get("results", {}).get("failed_checks", []):
            where = f"{check.get('file_path')}:{check.get('resource')}"
            failed.append(f"{check['check_id']} {check.get('check_name', '')} @ {where}")
    return failed


def parsing_errors(report: dict | list) -> int:
    reports = report if isinstance(report, list) else [report]
    return sum(rep.get("summary", {}).get("parsing_errors", 0) for rep in reports)


def test_every_skipped_check_is_justified() -> None:
    skips = skipped_checks(CONFIG.read_text())
    assert skips, "bicep/.checkov.yaml has no skip-check entries (expected the documented ones)"
    unjustified = [check for check, why in skips.items() if len(why) < 15]
    assert unjustified == [], f"skip-check entries without a one-line justification: {unjustified}"


def test_checkov_bicep_has_no_failed_checks() -> None:
    binary = checkov_bin()
    proc = subprocess.run(
        [
            str(binary),
            "--directory",
            str(BICEP),
            "--framework",
            "bicep",
            "--config-file",
            str(CONFIG),
            "--output",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        cwd=REPO,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        output = f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        pytest.fail(f"checkov did not print JSON (rc={proc.returncode}):\n{output}")
    assert parsing_errors(report) == 0, f"checkov could not parse some templates: {proc.stdout[-2000:]}"
    summary = (report[0] if isinstance(report, list) else report).get("summary", {})
    assert summary.get("passed", 0) > 0, f"checkov ran no checks: {summary}"
    assert failed_checks(report) == []
    assert proc.returncode == 0, proc.stderr[-2000:]


# --------------------------------------------------------------------------- the helpers can fail


def test_negative_unjustified_skip_and_failed_report_are_detected() -> None:
    config = (
        "skip-check:\n"
        "  - CKV_AZURE_1 # a real reason for this skip\n"
        "  - CKV_AZURE_2\n"
        "other: 1\n"
        "  - CKV_AZURE_3 # not in skip-check\n"
    )
    assert skipped_checks(config) == {"CKV_AZURE_1": "a real reason for this skip", "CKV_AZURE_2": ""}
    report = {
        "results": {
            "failed_checks": [
                {
                    "check_id": "CKV_AZURE_35",
                    "check_name": "deny",
                    "file_path": "/modules/storage.bicep",
                    "resource": "st",
                }
            ]
        },
        "summary": {"passed": 1, "failed": 1, "parsing_errors": 2},
    }
    assert failed_checks(report) == ["CKV_AZURE_35 deny @ /modules/storage.bicep:st"]
    assert parsing_errors([report, report]) == 4
