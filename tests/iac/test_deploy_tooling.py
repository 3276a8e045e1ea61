"""scripts/deploy.sh, the azd hook and the package ignore files.

No Azure (and no az/azd login) is reachable where this project is built, so
deploy.sh cannot be run end to end here. These tests check it with `bash -n`,
read which commands go through its bounded retry wrapper, and run its helper
functions (retry, role-propagation wait, packaging) in bash with `az` and
`sleep` replaced by shell functions: the script only runs its main flow when
executed, not when sourced.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.iac

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "scripts" / "deploy.sh"
AZURE_YAML = REPO / "azure.yaml"
FUNCIGNORE = REPO / ".funcignore"
GITIGNORE = REPO / ".gitignore"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

RETRY_MESSAGE = "waiting for role assignments to propagate (attempt"
# Tool caches, local state and build output: never deployed, never committed.
NEVER_SHIPPED_OR_COMMITTED = (
    ".dist",
    ".ruff_cache",
    ".mypy_cache",
    ".pytest_cache",
    ".hypothesis",
    ".devhost",
    "reports",
    ".venv*",
    ".azure",
)
# Source that is not part of the function app.
NOT_SHIPPED = ("tests", "devhost", "scripts", "docs", "bicep", "examples")


def bash() -> str:
    found = shutil.which("bash")
    assert found, "bash not found"
    return found


def run_sourced(snippet: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `snippet` in bash after sourcing deploy.sh (defines functions only)."""
    script = f"source {str(DEPLOY)!r}\nset +e\n{snippet}\n"
    return subprocess.run(
        [bash(), "-c", script], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def logical_lines(source: str) -> list[str]:
    """Shell lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", source)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def ignore_entries(path: Path) -> set[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line.rstrip("/") for line in lines if line and not line.startswith("#")}


# --------------------------------------------------------------------------- finding 2: bounded retry


def test_deploy_script_syntax() -> None:
    syntax = subprocess.run([bash(), "-n", str(DEPLOY)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr


def test_publish_and_test_events_run_under_the_retry_wrapper() -> None:
    lines = logical_lines(DEPLOY.read_text())
    publish = [line for line in lines if "az functionapp deployment source config-zip" in line]
    assert publish, "deploy.sh does not publish with az functionapp deployment source config-zip"
    assert all(line.startswith("retry_roles az functionapp deployment source config-zip") for line in publish)
    send = [line for line in lines if "send_args[@]" in line and not line.startswith("log ")]
    assert send == ['retry_roles "${python}" "${send_args[@]}"'], send
    assert any(line.startswith("local -a send_args=(-m scripts.send_events") for line in lines)


def test_retry_wrapper_is_bounded_and_explains_the_wait() -> None:
    result = run_sourced(
        """
RETRY_ATTEMPTS=3 RETRY_DELAY=0
calls=0; always_fails() { calls=$((calls + 1)); return 7; }
retry_roles always_fails; echo "rc=$? calls=$calls"
calls=0; second_time() { calls=$((calls + 1)); [[ $calls -ge 2 ]]; }
retry_roles second_time; echo "rc=$? calls=$calls"
"""
    )
    assert result.stdout.split() == ["rc=7", "calls=3", "rc=0", "calls=2"], result.stdout + result.stderr
    assert f"{RETRY_MESSAGE} 2/3" in result.stderr
    assert f"{RETRY_MESSAGE} 3/3" in result.stderr
    assert "giving up after 3/3 attempts" in result.stderr


def test_retry_back_off_doubles_up_to_the_cap() -> None:
    result = run_sourced(
        """
sleep() { echo "slept $1"; }
RETRY_ATTEMPTS=5 RETRY_DELAY=10 RETRY_MAX_DELAY=25
retry_roles false
"""
    )
    assert re.findall(r"slept (\d+)", result.stdout) == ["10", "20", "25", "25"]


def test_retry_defaults_are_bounded() -> None:
    source = DEPLOY.read_text()
    attempts = re.search(r'RETRY_ATTEMPTS="\$\{RETRY_ATTEMPTS:-(\d+)\}"', source)
    delay = re.search(r'RETRY_DELAY="\$\{RETRY_DELAY:-(\d+)\}"', source)
    cap = re.search(r'RETRY_MAX_DELAY="\$\{RETRY_MAX_DELAY:-(\d+)\}"', source)
    assert attempts and delay and cap
    n, first, most = int(attempts.group(1)), int(delay.group(1)), int(cap.group(1))
    total = sum(min(first * 2**i, most) for i in range(n - 1))
    assert 2 <= n <= 10 and 60 <= total <= 15 * 60, f"{n} attempts, {total}s of waiting"


def test_wait_for_roles_waits_only_for_fresh_assignments() -> None:
    stub_now = 'az() { python3 -c "from datetime import *; print(datetime.now(timezone.utc).isoformat())"; }'
    fresh = run_sourced(
        f"""
{stub_now}
sleep() {{ echo "slept $1"; }}
ROLE_PROPAGATION_SECONDS=70 ROLE_POLL_SECONDS=30
wait_for_role_propagation 00000000-0000-0000-0000-000000000001; echo "rc=$?"
"""
    )
    assert re.findall(r"slept (\d+)", fresh.stdout) == ["30", "30", "10"], fresh.stdout + fresh.stderr
    assert "rc=0" in fresh.stdout
    assert f"{RETRY_MESSAGE} 1/3" in fresh.stderr and f"{RETRY_MESSAGE} 3/3" in fresh.stderr
    old = run_sourced(
        """
az() { printf '2020-01-01T00:00:00.1234567Z\\n2021-06-01T00:00:00+00:00\\n'; }
sleep() { echo "slept $1"; }
wait_for_role_propagation 00000000-0000-0000-0000-000000000001; echo "rc=$?"
"""
    )
    assert old.stdout.split() == ["rc=0"], old.stdout + old.stderr
    unreadable = run_sourced('az() { return 1; }\nwait_for_role_propagation x; echo "rc=$?"')
    assert unreadable.stdout.split() == ["rc=0"] and "not waiting" in unreadable.stderr


def azd_hook(azure_yaml: str, event: str) -> dict[str, dict[str, str]]:
    """azure.yaml hooks.<event>: platform ('posix'/'windows') -> {shell, run} (no YAML
    library in the venv; the file is small and indented by two spaces per level)."""
    block = re.search(rf"(?m)^  {event}:\s*\n((?:(?:\s{{4,}}.*)?\n?)+)", azure_yaml.split("\nhooks:", 1)[-1])
    out: dict[str, dict[str, str]] = {}
    if not block:
        return out
    platform = ""
    for line in block.group(1).splitlines():
        if m := re.match(r"^    (posix|windows):\s*$", line):
            platform = m.group(1)
            out[platform] = {}
        elif (m := re.match(r"^      (shell|run):\s*(.+?)\s*$", line)) and platform:
            out[platform][m.group(1)] = m.group(2)
    return out


def test_azd_predeploy_hook_waits_for_role_assignments() -> None:
    hook = azd_hook(AZURE_YAML.read_text(), "predeploy")
    assert hook.get("posix") == {"shell": "sh", "run": "./scripts/deploy.sh wait-for-roles"}, hook
    assert hook.get("windows") == {"shell": "pwsh", "run": "./scripts/hooks/wait-for-roles.ps1"}, hook
    assert (REPO / "scripts" / "hooks" / "wait-for-roles.ps1").is_file()
    assert "wait-for-roles) cmd_wait_for_roles" in DEPLOY.read_text()
    # Without the app identity's output (nothing provisioned yet) the hook must not fail azd.
    result = run_sourced('unset AZURE_APP_PRINCIPAL_ID; cmd_wait_for_roles; echo "rc=$?"')
    assert result.stdout.split() == ["rc=0"]
    assert "AZURE_APP_PRINCIPAL_ID is not set" in result.stderr
    # It waits for the app identity, never for azd's AZURE_PRINCIPAL_ID (the deployer).
    waited = run_sourced(
        'wait_for_role_propagation() { echo "waited for $1"; }\n'
        "az() { return 0; }\n"
        "AZURE_PRINCIPAL_ID=deployer AZURE_APP_PRINCIPAL_ID=app cmd_wait_for_roles"
    )
    assert waited.stdout.split() == ["waited", "for", "app"], waited.stdout + waited.stderr
    assert "azd deploy" in DEPLOY_DOC.read_text()


# --------------------------------------------------------------------------- finding 3: az publish, .venv


def test_publish_uses_az_one_deploy_not_core_tools() -> None:
    lines = logical_lines(DEPLOY.read_text())
    assert not [line for line in lines if re.search(r"\bfunc\s+azure\s+functionapp\s+publish\b", line)]
    assert any("--build-remote true" in line for line in lines if "config-zip" in line)
    assert re.search(r'MIN_AZ_VERSION="2\.60\.0"', DEPLOY.read_text()), "Flex needs Azure CLI 2.60.0+"
    result = run_sourced("version_ge 2.67.0 2.60.0 && echo ok1; version_ge 2.9.0 2.60.0 || echo ok2")
    assert result.stdout.split() == ["ok1", "ok2"]


def test_test_events_use_the_project_venv() -> None:
    source = DEPLOY.read_text()
    assert "python3 -m scripts.send_events" not in source, "the system python lacks the Azure SDKs"
    assert 'local python="${PYTHON:-.venv/bin/python}"' in source
    assert "make setup" in source
    missing = run_sourced(
        'make() { echo "make $*" >&2; return 1; }\n'
        'PYTHON=/nonexistent/python test_events_python; echo "rc=$?"'
    )
    assert missing.stdout.split() == ["rc=1"] and "make setup" in missing.stderr


# --------------------------------------------------------------------------- finding 9: azd wording


def test_docs_state_the_azd_stage_of_resource_group_deployments() -> None:
    doc = DEPLOY_DOC.read_text()
    assert "beta" in doc and "1.10.0" in doc
    assert "azd config set alpha.resourceGroupDeployments on" in doc


# --------------------------------------------------------------------------- finding 10: ignore files


def test_funcignore_excludes_caches_local_state_and_non_app_source() -> None:
    entries = ignore_entries(FUNCIGNORE)
    expected = set(NEVER_SHIPPED_OR_COMMITTED) | set(NOT_SHIPPED)
    assert sorted(expected - entries) == []


def test_gitignore_excludes_caches_and_build_output() -> None:
    entries = ignore_entries(GITIGNORE)
    assert sorted(set(NEVER_SHIPPED_OR_COMMITTED) - entries) == []


def test_packager_honours_funcignore(tmp_path: Path) -> None:
    for rel in (
        "function_app.py",
        "host.json",
        "requirements.txt",
        "functions/api.py",
        "shared/models/model.onnx",
        "tests/test_x.py",
        "examples/events.jsonl",
        ".dist/app.zip",
        ".ruff_cache/x",
        ".hypothesis/x",
        ".venv-iac/x",
        ".azure/dev/.env",
        "reports/bench.json",
        "functions/__pycache__/api.cpython-311.pyc",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    shutil.copy(FUNCIGNORE, tmp_path / ".funcignore")
    result = run_sourced('package_app; echo "rc=$?"', cwd=tmp_path)
    assert result.stdout.split() == ["rc=0"], result.stderr
    with zipfile.ZipFile(tmp_path / ".dist" / "app.zip") as package:
        names = sorted(package.namelist())
    assert names == [
        "function_app.py",
        "functions/api.py",
        "host.json",
        "requirements.txt",
        "shared/models/model.onnx",
    ]


def test_the_app_never_imports_what_the_package_leaves_out() -> None:
    """shared/journeys.py (the simulator) is left out of the package: loading the app and running
    its imports must not need it, or the deployed app would fail to start."""
    import subprocess
    import sys

    code = (
        "import sys, function_app, functions.ingest, functions.player_entity, functions.api;"
        "import shared.model, shared.store, shared.parking;"
        "print('shared.journeys' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert "shared/journeys.py" in FUNCIGNORE.read_text().splitlines()
