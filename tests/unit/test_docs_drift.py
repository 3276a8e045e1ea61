"""The docs cannot drift from the tree (issue 20, item 2).

- every module (a ``.py`` file or a package) of ``shared/``, ``functions/``, ``devhost/`` and
  ``scripts/`` is named in its folder's row of the README's layout table;
- every repository file path CONTRIBUTING.md or the README names exists;
- every make target (the Makefile's ``.PHONY``) has a line in the README;
- ``devhost/`` never imports ``scripts/``, and the app (``shared/``, ``functions/``) imports
  neither; no devhost module is over 800 lines.

Each check is a function over text (or a tree) that returns what is wrong, so the tests below
also show, on a made-up input, that each check does catch what it is for.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYOUT_FOLDERS = ("shared", "functions", "devhost", "scripts")
MAX_DEVHOST_LINES = 800
# Where a named path must exist: the repository's own folders and top-level files.
PATH_ROOTS = ("shared", "functions", "devhost", "scripts", "tests", "docs", "bicep", "examples")
ROOT_FILES = re.compile(
    r"^(function_app\.py|host\.json|requirements(-dev|-iac)?\.txt|local\.settings\.sample\.json|"
    r"Makefile|pyproject\.toml|package(-lock)?\.json|azure\.yaml|\.funcignore|README\.md|CONTRIBUTING\.md)$"
)


# -- the checks ---------------------------------------------------------------------------------


def packages(root: Path, top: str) -> dict[str, list[str]]:
    """``folder/`` -> its modules (file stems and sub-package names), for ``top`` and every
    package below it (a folder with Python files)."""
    out: dict[str, list[str]] = {}
    for folder in sorted([root / top, *(p for p in (root / top).rglob("*") if p.is_dir())]):
        if "__pycache__" in folder.parts or not any(folder.glob("*.py")):
            continue
        modules = [p.stem for p in folder.glob("*.py") if p.name != "__init__.py"]
        modules += [d.name for d in folder.iterdir() if d.is_dir() and any(d.glob("*.py"))]
        out[folder.relative_to(root).as_posix() + "/"] = sorted(modules)
    return out


def layout_rows(readme: str) -> dict[str, str]:
    """The README's layout table: first cell (a path in backticks) -> the whole row."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    return rows


def missing_from_layout(readme: str, tree: dict[str, list[str]]) -> list[str]:
    """Modules whose folder's row does not name them (a sub-package needs a row of its own)."""
    rows = layout_rows(readme)
    missing = []
    for folder, modules in tree.items():
        row = rows.get(folder)
        if row is None:
            missing.append(f"{folder} (no row)")
            continue
        for name in modules:
            if f"{folder}{name}/" in tree:  # a sub-package: its own row
                continue
            if not any(f"`{name}{end}`" in row for end in ("", ".py", "/")):
                missing.append(folder + name)
    return missing


_PATH = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+(?:/|\.\w+))(?::\S*)?")


def named_paths(text: str) -> set[str]:
    """Repository paths a Markdown text names: in backticks (up to a ``::test`` or an argument)
    or as a relative link target (up to an ``#anchor``)."""
    found: set[str] = set()
    spans = re.findall(r"`([^`\n]+)`", text) + re.findall(r"\]\(([^)#\s]+)", text)
    for span in spans:
        if re.match(r"^[a-z]+://", span):
            continue
        head = span.split("::")[0].split()[0] if span.split() else ""
        if not head or any(c in head for c in "<>*{}$%"):
            continue
        first = head.split("/")[0]
        if ("/" in head and first in PATH_ROOTS) or ROOT_FILES.match(head):
            found.add(head)
    return found


def missing_paths(text: str, root: Path) -> list[str]:
    return sorted(p for p in named_paths(text) if not (root / p).exists())


def phony_targets(makefile: str) -> list[str]:
    m = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert m, "the Makefile declares its targets in .PHONY"
    return m.group(1).split()


def targets_without_a_line(readme: str, targets: list[str]) -> list[str]:
    return [t for t in targets if not re.search(rf"`make {re.escape(t)}(?:\s[^`]*)?`", readme)]


def imports_of(path: Path) -> set[str]:
    """Top-level package of every module ``path`` imports (absolute imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def modules_imported(path: Path) -> set[str]:
    """Every module ``path`` imports by absolute name (``from a.b import c`` gives ``a.b`` and
    ``a.b.c``: ``c`` may be a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


# The run itself, at the top of devhost/: what the emulators of the platform parts never import.
RUN_MODULES = {
    f"devhost.{p.stem}"
    for p in (ROOT / "devhost").glob("*.py")
    # db.py: the state the parts share; metrics.py: the in-memory reader of the app's instruments,
    # installed in every process that runs app code (the host's and each worker's telemetry export)
    if p.stem not in ("__init__", "db", "metrics")
}
PLATFORM_PARTS = ("functions_host", "eventhubs", "durable", "storage", "servers")


def upward_imports(root: Path, parts: tuple[str, ...], run_modules: set[str]) -> list[str]:
    return sorted(
        f"{p.relative_to(root)} imports {', '.join(sorted(modules_imported(p) & run_modules))}"
        for part in parts
        for p in (root / "devhost" / part).rglob("*.py")
        if modules_imported(p) & run_modules
    )


def importers(root: Path, folders: tuple[str, ...], forbidden: set[str]) -> list[str]:
    return sorted(
        f"{p.relative_to(root)} imports {', '.join(sorted(imports_of(p) & forbidden))}"
        for folder in folders
        for p in (root / folder).rglob("*.py")
        if imports_of(p) & forbidden
    )


def long_modules(root: Path, folder: str, limit: int) -> list[str]:
    return sorted(
        f"{p.relative_to(root)}: {n} lines"
        for p in (root / folder).rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit
    )


# -- the repository -----------------------------------------------------------------------------


def test_every_module_is_in_the_readme_layout_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tree = {k: v for top in LAYOUT_FOLDERS for k, v in packages(ROOT, top).items()}
    assert "devhost/durable/" in tree and "shared/entity/" in tree  # the walk sees sub-packages
    assert missing_from_layout(readme, tree) == []


def test_every_file_contributing_and_the_readme_name_exists() -> None:
    for doc in ("CONTRIBUTING.md", "README.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert len(named_paths(text)) > 10, doc  # the check reads the paths it should
        assert missing_paths(text, ROOT) == [], doc


def test_every_make_target_has_a_line_in_the_readme() -> None:
    targets = phony_targets((ROOT / "Makefile").read_text(encoding="utf-8"))
    assert {"run", "test", "bench"} <= set(targets)
    assert targets_without_a_line((ROOT / "README.md").read_text(encoding="utf-8"), targets) == []


def test_the_devhost_never_imports_scripts_and_the_app_imports_neither() -> None:
    assert importers(ROOT, ("devhost",), {"scripts"}) == []
    assert importers(ROOT, ("shared", "functions"), {"devhost", "scripts"}) == []


def test_the_platform_parts_never_import_the_run_above_them() -> None:
    assert {"devhost.host", "devhost.pipeline", "devhost.cli"} <= RUN_MODULES
    assert upward_imports(ROOT, PLATFORM_PARTS, RUN_MODULES) == []


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "devhost/durable/a.py": "from devhost import pipeline\nfrom devhost.db import DevDB\n",
            "devhost/storage/b.py": "from devhost.host import Host\n",
            "devhost/storage/c.py": "from devhost.functions_host import worker\n",
        },
    )
    assert upward_imports(root, ("durable", "storage"), {"devhost.pipeline", "devhost.host"}) == [
        "devhost/durable/a.py imports devhost.pipeline",
        "devhost/storage/b.py imports devhost.host",
    ]


def test_no_devhost_module_is_over_800_lines() -> None:
    assert long_modules(ROOT, "devhost", MAX_DEVHOST_LINES) == []


# -- each check catches what it is for ----------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_module_missing_from_the_table_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"pkg/a.py": "", "pkg/b.py": "", "pkg/sub/__init__.py": "", "pkg/sub/c.py": ""})
    tree = packages(root, "pkg")
    assert tree == {"pkg/": ["a", "b", "sub"], "pkg/sub/": ["c"]}
    readme = "# x\n\n## Layout\n\n| path | holds |\n| --- | --- |\n| `pkg/` | `a`, `sub/` |\n\n## Next\n"
    assert missing_from_layout(readme, tree) == ["pkg/b", "pkg/sub/ (no row)"]
    # a name outside the layout section does not count
    assert "pkg/b" in missing_from_layout(readme + "`b`\n", tree)


def test_a_path_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"docs/a.md": "", "shared/x.py": ""})
    text = (
        "See [a](docs/a.md#part), `shared/x.py` `default_settings`, `tests/gone.py::test_it`, "
        "`shared/gone.py`, `scripts/bench*.py` and `.venv/bin/python -m devhost run`, https://x/y.py."
    )
    assert named_paths(text) == {"docs/a.md", "shared/x.py", "tests/gone.py", "shared/gone.py"}
    assert missing_paths(text, root) == ["shared/gone.py", "tests/gone.py"]


def test_a_make_target_without_a_readme_line_is_reported() -> None:
    makefile = ".PHONY: run lint lint-only train\n\nrun:\n\techo\n"
    readme = "| `make run` | x |\n| `make lint` / `make train SEED=1` | y |\n"
    assert targets_without_a_line(readme, phony_targets(makefile)) == ["lint-only"]


def test_a_forbidden_import_and_a_long_module_are_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "devhost/a.py": "from scripts import summary_report\n",
            "devhost/sub/b.py": "import scripts.bench\nimport json\n",
            "devhost/c.py": "from . import a\nfrom shared import events\n" + "x = 1\n" * 801,
        },
    )
    assert importers(root, ("devhost",), {"scripts"}) == [
        "devhost/a.py imports scripts",
        "devhost/sub/b.py imports scripts",
    ]
    assert long_modules(root, "devhost", 800) == ["devhost/c.py: 803 lines"]
