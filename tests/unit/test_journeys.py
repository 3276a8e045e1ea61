"""The synthetic journey generator: deterministic, valid against the event contract, and varied."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from shared.events import USED_TYPES, Dropped, PlayerEvent, parse
from shared.journeys import (
    LABELS,
    NOISE_TYPES,
    PROFILES,
    STATE_TO_LABEL,
    STATES,
    Journey,
    generate,
    interleave,
)
from shared.policy import ACTION_TYPES

START = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = timedelta(days=3)
END_MS = int((START + WINDOW).timestamp() * 1000)


@pytest.fixture(scope="module")
def journeys() -> list[Journey]:
    return generate(250, seed=11, start=START, duration=WINDOW)


def _fingerprint(js: list[Journey]) -> list[tuple[str, list[str], list[str]]]:
    return [(j.player_id, [msgspec.json.encode(e).decode() for e in j.events], j.truth) for j in js]


def test_same_seed_same_journeys() -> None:
    assert _fingerprint(generate(15, 5, START, WINDOW)) == _fingerprint(generate(15, 5, START, WINDOW))


def test_other_seed_other_journeys() -> None:
    a, b = generate(15, 5, START, WINDOW), generate(15, 6, START, WINDOW)
    assert _fingerprint(a) != _fingerprint(b)
    ids_a = {e["id"] for j in a for e in j.events}
    assert ids_a.isdisjoint({e["id"] for j in b for e in j.events})


def test_a_player_does_not_depend_on_how_many_were_generated() -> None:
    assert _fingerprint(generate(4, 5, START, WINDOW)) == _fingerprint(generate(9, 5, START, WINDOW)[:4])


def test_ids_unique_and_player_ids_well_formed(journeys: list[Journey]) -> None:
    ids = [e["id"] for j in journeys for e in j.events]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"player-\d{5}", j.player_id) for j in journeys)
    assert all(e["subject"] == j.player_id for j in journeys for e in j.events)


def test_every_used_event_parses_and_noise_is_dropped(journeys: list[Journey]) -> None:
    seen: Counter[str] = Counter()
    for j in journeys:
        for event in j.events:
            result = parse(msgspec.json.encode(event), now_ms=END_MS)
            if event["type"] in USED_TYPES:
                assert isinstance(result, PlayerEvent), (event, result)
            else:
                assert event["type"] in NOISE_TYPES
                assert isinstance(result, Dropped)
            seen[event["type"]] += 1
    assert USED_TYPES <= set(seen), f"missing types: {USED_TYPES - set(seen)}"
    assert set(NOISE_TYPES) <= set(seen)
    noise = sum(seen[t] for t in NOISE_TYPES) / sum(seen.values())
    assert 0.01 < noise < 0.1
    traced = sum(1 for j in journeys for e in j.events if "traceparent" in e)
    assert traced > 0


def test_times_ordered_and_inside_the_window(journeys: list[Journey]) -> None:
    start_ms = int(START.timestamp() * 1000)
    for j in journeys:
        assert len(j.events) == len(j.truth) == len(j.times_ms)
        assert j.times_ms == sorted(j.times_ms)
        assert all(start_ms <= t <= END_MS for t in j.times_ms)
        first = parse(msgspec.json.encode(j.events[0]), now_ms=END_MS)
        if isinstance(first, PlayerEvent):
            assert first.time_ms == j.times_ms[0]


def test_hidden_state_mix_and_transitions(journeys: list[Journey]) -> None:
    states = Counter(s for j in journeys for s in j.truth)
    assert set(states) == set(STATES)
    assert states["fine"] > states["tilting"] > 0
    assert Counter(j.profile for j in journeys).keys() == set(PROFILES)
    transitions = {(a, b) for j in journeys for a, b in zip(j.truth, j.truth[1:], strict=False) if a != b}
    assert {
        ("fine", "tilting"),
        ("tilting", "fine"),
        ("newcomer", "fine"),
        ("fine", "disengaging"),
    } <= transitions


def test_hidden_state_drives_behaviour(journeys: list[Journey]) -> None:
    """Tilting rounds carry higher stakes relative to the player's own fine rounds."""
    ratios = []
    for j in journeys:
        stakes: dict[str, list[float]] = {"fine": [], "tilting": []}
        for event, state in zip(j.events, j.truth, strict=True):
            if event["type"] == "round.completed" and state in stakes:
                stakes[state].append(event["data"]["stake"])
        if len(stakes["fine"]) > 20 and len(stakes["tilting"]) > 20:
            ratios.append(
                sum(stakes["tilting"]) / len(stakes["tilting"]) / (sum(stakes["fine"]) / len(stakes["fine"]))
            )
    assert ratios and sorted(ratios)[len(ratios) // 2] > 1.5


def test_mix_selects_profiles() -> None:
    assert {j.profile for j in generate(10, 1, START, WINDOW, mix={"tilt_prone": 1.0})} == {"tilt_prone"}
    newcomers = generate(10, 1, START, WINDOW, mix={"newcomer": 1.0})
    assert all(j.truth[0] == "newcomer" for j in newcomers if j.truth)
    with pytest.raises(ValueError):
        generate(1, 1, START, WINDOW, mix={"whale": 1.0})


def test_interleave_merges_by_time(journeys: list[Journey]) -> None:
    subset = journeys[:40]
    merged = list(interleave(subset))
    assert len(merged) == sum(len(j.events) for j in subset)
    times = [parse(msgspec.json.encode(e), now_ms=END_MS) for e in merged]
    stamps = [r.time_ms for r in times if isinstance(r, PlayerEvent)]
    assert stamps == sorted(stamps)


def test_label_map() -> None:
    assert LABELS[0] == "none" and LABELS[1:] == ACTION_TYPES
    assert set(STATE_TO_LABEL) == set(STATES)
    assert set(STATE_TO_LABEL.values()) == set(LABELS)


def test_interleave_breaks_time_ties_by_player_without_comparing_events() -> None:
    """Regression: the per-player streams bound the player index late, so equal times fell
    through to comparing the event dicts (TypeError with 1,200+ players, or short windows)."""
    a = Journey("a", "fine", [{"id": "a1"}, {"id": "a2"}], ["fine", "fine"], [1000, 2000])
    b = Journey("b", "fine", [{"id": "b1"}, {"id": "b2"}], ["fine", "fine"], [1000, 2000])
    assert [e["id"] for e in interleave([a, b])] == ["a1", "b1", "a2", "b2"]
    assert [e["id"] for e in interleave([b, a])] == ["b1", "a1", "b2", "a2"]


@pytest.mark.parametrize(("players", "seconds"), [(1200, 86_400), (40, 600), (40, 3600)])
def test_generated_journeys_interleave_at_any_size(players: int, seconds: int) -> None:
    js = generate(players, 3, START, timedelta(seconds=seconds))
    times = [
        int(datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() * 1000)
        for e in interleave(js)
    ]
    assert times == sorted(times) and len(times) == sum(len(j.events) for j in js)
