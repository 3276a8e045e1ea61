"""shared.holdout and its settings: deterministic keyed assignment, near the configured share."""

from __future__ import annotations

import hashlib
import math

import pytest

from shared import config
from shared.config import ConfigError, parse_holdout_salt, parse_holdout_share
from shared.holdout import draw, is_held_out

KEY = "pi-holdout-1"


def test_draw_is_the_keyed_blake2b_of_player_day_and_type_as_a_fraction() -> None:
    digest = hashlib.blake2b(b"player-1\x1f2026-11-21\x1fbonus_offer", key=KEY.encode(), digest_size=8)
    assert draw("player-1", "2026-11-21", "bonus_offer", KEY.encode()) == int(digest.hexdigest(), 16) / 2**64


def test_assignment_is_deterministic_and_depends_on_every_input() -> None:
    players = [f"player-{i:05d}" for i in range(400)]
    first = [is_held_out(p, "2026-11-21", "bonus_offer", 0.5, KEY) for p in players]
    assert first == [is_held_out(p, "2026-11-21", "bonus_offer", 0.5, KEY) for p in players]
    assert first == [is_held_out(p, "2026-11-21", "bonus_offer", 0.5, KEY.encode()) for p in players]
    # another day, another type, another salt: another draw for about half the players
    for other in (
        [is_held_out(p, "2026-11-22", "bonus_offer", 0.5, KEY) for p in players],
        [is_held_out(p, "2026-11-21", "help_offer", 0.5, KEY) for p in players],
        [is_held_out(p, "2026-11-21", "bonus_offer", 0.5, "pi-holdout-2") for p in players],
    ):
        changed = sum(a != b for a, b in zip(first, other, strict=True))
        assert 140 <= changed <= 260, changed


@pytest.mark.parametrize("share", [0.05, 0.1, 0.3])
def test_the_held_out_share_over_many_players_is_near_the_setting(share: float) -> None:
    n = 20_000
    held = sum(is_held_out(f"player-{i:06d}", "2026-11-21", "bonus_offer", share, KEY) for i in range(n))
    sd = math.sqrt(n * share * (1 - share))
    assert abs(held - n * share) < 4 * sd, (held, n * share, sd)  # a 4-sigma bound on fixed inputs


def test_share_zero_never_and_one_always() -> None:
    players = [f"p{i}" for i in range(200)]
    assert not any(is_held_out(p, "2026-11-21", "bonus_offer", 0.0, KEY) for p in players)
    assert all(is_held_out(p, "2026-11-21", "bonus_offer", 1.0, KEY) for p in players)


def test_a_smaller_share_holds_out_a_subset_of_a_larger_one() -> None:
    players = [f"p{i}" for i in range(2000)]
    small = {p for p in players if is_held_out(p, "2026-11-21", "bonus_offer", 0.1, KEY)}
    large = {p for p in players if is_held_out(p, "2026-11-21", "bonus_offer", 0.3, KEY)}
    assert small < large


# -- settings -------------------------------------------------------------------------------------


def test_holdout_share_default_holds_out_only_bonus_offers() -> None:
    assert parse_holdout_share(None) == {"break_suggestion": 0.0, "help_offer": 0.0, "bonus_offer": 0.1}
    assert parse_holdout_share("  ") == parse_holdout_share(None)


def test_a_set_holdout_share_is_the_whole_table() -> None:
    assert parse_holdout_share("help_offer=0.05, bonus_offer=0.2") == {
        "break_suggestion": 0.0,
        "help_offer": 0.05,
        "bonus_offer": 0.2,
    }
    assert parse_holdout_share("bonus_offer=0") == dict.fromkeys(
        ("break_suggestion", "help_offer", "bonus_offer"), 0.0
    )


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("free_spins=0.1", "unknown action type 'free_spins'"),
        ("bonus_offer=lots", "must be a number"),
        ("bonus_offer=1.5", "must be in [0, 1]"),
        ("bonus_offer=-0.1", "must be in [0, 1]"),
        ("bonus_offer=nan", "must be in [0, 1]"),
        ("bonus_offer", "expected type=share"),
        ("bonus_offer=0.1,bonus_offer=0.2", "names bonus_offer twice"),
        (",", "names no action type"),
        (" , ,", "names no action type"),
    ],
)
def test_a_bad_holdout_share_is_a_clear_configuration_error(raw: str, says: str) -> None:
    with pytest.raises(ConfigError, match="HOLDOUT_SHARE") as err:
        parse_holdout_share(raw)
    assert says in str(err.value)


def test_holdout_salt_default_and_bounds() -> None:
    assert parse_holdout_salt(None) == parse_holdout_salt("") == "pi-holdout-1"
    assert parse_holdout_salt("season-2") == "season-2"
    with pytest.raises(ConfigError, match="HOLDOUT_SALT"):
        parse_holdout_salt("   ")
    with pytest.raises(ConfigError, match="at most 64 bytes"):
        parse_holdout_salt("x" * 65)


def _env(**extra: str) -> dict[str, str]:
    return {"COSMOS_ENDPOINT": "http://localhost:8081", "COSMOS_KEY": "k", **extra}


def test_settings_load_the_holdout_and_challenger_settings(tmp_path) -> None:
    s = config.load(_env())
    assert s.holdout_share["bonus_offer"] == 0.1 and s.holdout_salt == "pi-holdout-1"
    assert s.challenger_model is None
    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "model_card.json").write_text("{}")
    s = config.load(
        _env(HOLDOUT_SHARE="help_offer=0.2", HOLDOUT_SALT="s2", CHALLENGER_MODEL=str(tmp_path / "m.onnx"))
    )
    assert s.holdout_share == {"break_suggestion": 0.0, "help_offer": 0.2, "bonus_offer": 0.0}
    assert s.holdout_salt == "s2" and s.challenger_model == str(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="HOLDOUT_SHARE"):
        config.load(_env(HOLDOUT_SHARE="bonus=0.1"))


def test_a_challenger_model_path_without_file_or_card_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="CHALLENGER_MODEL: no model file"):
        config.load(_env(CHALLENGER_MODEL=str(tmp_path / "missing.onnx")))
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ConfigError, match="no model_card.json"):
        config.load(_env(CHALLENGER_MODEL=str(tmp_path / "m.onnx")))
    # relative: from the app's root, not the working directory
    assert config.challenger_path("shared/models/player_intervention.onnx") == str(
        config.APP_ROOT / "shared" / "models" / "player_intervention.onnx"
    )


def test_a_holdout_with_the_public_default_salt_is_warned_about(monkeypatch, caplog) -> None:
    from shared import config, runtime

    base = {"COSMOS_ENDPOINT": "http://127.0.0.1:8081", "COSMOS_KEY": "k"}
    cases = [({}, True), ({"HOLDOUT_SALT": "private-1"}, False), ({"HOLDOUT_SHARE": "bonus_offer=0"}, False)]
    monkeypatch.setenv("WEBSITE_SKU", "FlexConsumption")  # in Azure (locally the default is fine)
    for env, warned in cases:
        loaded = config.load({**base, **env})
        monkeypatch.setattr(runtime, "settings", lambda loaded=loaded: loaded)
        runtime.rules.cache_clear()
        caplog.clear()
        runtime.rules()
        assert ("HOLDOUT_SALT is the public default" in caplog.text) is warned
    monkeypatch.delenv("WEBSITE_SKU")
    runtime.rules.cache_clear()
    caplog.clear()
    runtime.rules()
    assert "HOLDOUT_SALT" not in caplog.text
    runtime.rules.cache_clear()
