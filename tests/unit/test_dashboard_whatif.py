"""The dashboard's what-if endpoints on a real loopback aiohttp server: the newest report in the
report folder and its PNG, nothing when there is none, and only to requests addressed to the
loopback address. (The page itself, in a browser: tests/e2e/test_dashboard.py.)"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devhost.dashboard import Dashboard


async def _get(folder: Path, paths: list[tuple[str, dict[str, str]]]) -> list[tuple[int, str, bytes]]:
    board = Dashboard()
    board.default_report_dir = folder
    app = web.Application()
    board.add_routes(app)
    out = []
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for path, headers in paths:
            resp = await client.get(path, headers=headers)
            out.append((resp.status, resp.content_type, await resp.read()))
    return out


def _report(folder: Path, name: str, added: int, mtime: float) -> dict[str, Any]:
    report = {"schema": "pi-whatif/1", "added": {"help_offer": {"total": added}}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    (folder / f"{name}.png").write_bytes(b"\x89PNG" + name.encode())
    os.utime(path, (mtime, mtime))
    return report


def test_no_report_yet(tmp_path: Path) -> None:
    [(status, _, body), (png, _, _)] = asyncio.run(
        _get(tmp_path, [("/devhost/api/whatif", {}), ("/devhost/api/whatif.png", {})])
    )
    assert status == 200 and json.loads(body) == {"report": None, "folder": str(tmp_path)}
    assert png == 404


def test_the_newest_report_and_its_chart(tmp_path: Path) -> None:
    _report(tmp_path, "whatif-20260101T000000Z", 1, 1_000_000)
    newest = _report(tmp_path, "whatif-20250101T000000Z", 2, 2_000_000)  # newer file, older name
    (tmp_path / "devhost-20260101T000000Z.json").write_text("{}", encoding="utf-8")  # not a what-if
    [(status, _, body), (png, kind, data), (foreign, _, _)] = asyncio.run(
        _get(
            tmp_path,
            [
                ("/devhost/api/whatif", {}),
                ("/devhost/api/whatif.png", {}),
                ("/devhost/api/whatif", {"Host": "dashboard.example:80"}),
            ],
        )
    )
    got = json.loads(body)
    assert status == 200 and got["report"] == newest and got["png"] == "/devhost/api/whatif.png"
    assert got["path"] == str(tmp_path / "whatif-20250101T000000Z.json")
    assert png == 200 and kind == "image/png" and data == b"\x89PNGwhatif-20250101T000000Z"
    assert foreign == 421


def test_an_unreadable_report_is_said_so(tmp_path: Path) -> None:
    (tmp_path / "whatif-x.json").write_text("{not json", encoding="utf-8")
    [(status, _, body)] = asyncio.run(_get(tmp_path, [("/devhost/api/whatif", {})]))
    got = json.loads(body)
    assert status == 200 and got["report"] is None and got["error"].startswith("unreadable")
