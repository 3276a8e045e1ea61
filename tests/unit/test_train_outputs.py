"""What `make train` writes (scripts/train_model.write_outputs) and how it reports its stages.

Real files in a tmp dir and the committed model card as the starting point; no training
(the full run takes minutes of CPU). The model bytes are opaque to the writer, so a changed
model is the committed bytes plus one byte.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from scripts import train_model as tm

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A copy of the committed model directory."""
    for name in (tm.MODEL_FILE, tm.CARD_FILE, tm.CARD_MD_FILE):
        (tmp_path / name).write_bytes((MODELS / name).read_bytes())
    return tmp_path


def _files(d: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def _retrained(out: Path, **changes: Any) -> dict[str, Any]:
    """The card a retraining of the same model makes today: new version date, time, training seconds."""
    card = json.loads((out / tm.CARD_FILE).read_text(encoding="utf-8"))
    card["model_version"] = "pi-20280101-" + card["onnx_sha256"][:8]
    card["created"] = "2028-01-01T09:00:00+00:00"
    card["train_seconds"] = card["train_seconds"] + 300.0
    card.update(changes)
    return card


def test_the_same_model_bytes_leave_every_file_untouched(out: Path) -> None:
    before = _files(out)
    model = (out / tm.MODEL_FILE).read_bytes()
    card = _retrained(out)

    assert tm.write_outputs(out, model, card) == "unchanged"
    assert _files(out) == before  # same bytes, not even rewritten (mtimes equal)
    # The caller's card now names the model as it was committed.
    committed = json.loads(before[tm.CARD_FILE][0])
    assert card["model_version"] == committed["model_version"]
    assert card["created"] == committed["created"]


def test_a_different_model_is_written_with_its_new_card(out: Path) -> None:
    model = (out / tm.MODEL_FILE).read_bytes() + b"\x00"
    card = _retrained(out, onnx_bytes=len(model))

    assert tm.write_outputs(out, model, card) == "written"
    assert (out / tm.MODEL_FILE).read_bytes() == model
    written = json.loads((out / tm.CARD_FILE).read_text(encoding="utf-8"))
    assert written["model_version"] == "pi-20280101-" + card["onnx_sha256"][:8]
    assert written["created"] == "2028-01-01T09:00:00+00:00"
    assert (out / tm.CARD_MD_FILE).read_text(encoding="utf-8") == tm.render_markdown(written)


def test_the_same_model_with_a_new_caveat_keeps_its_version(out: Path) -> None:
    before = _files(out)
    committed = json.loads(before[tm.CARD_FILE][0])
    model = (out / tm.MODEL_FILE).read_bytes()
    card = _retrained(out, caveats=[*committed["caveats"], "A new caveat."])

    assert tm.write_outputs(out, model, card) == "card updated"
    assert _files(out)[tm.MODEL_FILE] == before[tm.MODEL_FILE]
    written = json.loads((out / tm.CARD_FILE).read_text(encoding="utf-8"))
    assert written["caveats"][-1] == "A new caveat."
    for key in tm.VOLATILE_CARD_FIELDS:
        assert written[key] == committed[key]
    assert "- A new caveat." in (out / tm.CARD_MD_FILE).read_text(encoding="utf-8")


def test_an_empty_directory_gets_all_three_files(tmp_path: Path) -> None:
    card = json.loads((MODELS / tm.CARD_FILE).read_text(encoding="utf-8"))
    assert tm.write_outputs(tmp_path / "new", b"model", card) == "written"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(
        [tm.MODEL_FILE, tm.CARD_FILE, tm.CARD_MD_FILE]
    )


def test_the_committed_card_is_what_the_writer_renders() -> None:
    """MODEL_CARD.md is generated from model_card.json: an unchanged model must find them equal."""
    card = json.loads((MODELS / tm.CARD_FILE).read_text(encoding="utf-8"))
    assert (MODELS / tm.CARD_MD_FILE).read_text(encoding="utf-8") == tm.render_markdown(card)


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.5
        return self.t


def test_stages_print_plain_lines_when_not_a_terminal() -> None:
    buf = io.StringIO()
    stages = tm.Stages(2, out=buf, clock=Ticks(), tty=False)
    stages.start("first")
    seen = list(stages.items(list(range(10)), "journeys"))
    stages.start("second")
    stages.end()

    assert seen == list(range(10))
    assert buf.getvalue().splitlines() == [
        "[1/2] first",
        "      2/10 journeys",
        "      5/10 journeys",
        "      7/10 journeys",
        "      10/10 journeys",
        "      done in 1.5 s",
        "[2/2] second",
        "      done in 1.5 s",
    ]
    assert "\r" not in buf.getvalue()
