"""Randomized holdout: which would-be actions are withheld, to measure what the sent ones change.

Assignment is a keyed hash of (player, UTC day of the trigger's event time, action type): the
same inputs always give the same group, so replays, redeliveries and a what-if replay assign
alike, and a player is in one group per type for a whole day. ``HOLDOUT_SALT`` is the key:
changing it re-draws every group. docs/workflows.md describes the design.
"""

from __future__ import annotations

import hashlib

TREATED, HOLDOUT = "treated", "holdout"
_SCALE = float(2**64)


def draw(player_id: str, day: str, action_type: str, key: bytes) -> float:
    """A uniform number in [0, 1) fixed by the inputs: BLAKE2b(key, 8 bytes) as uint64 / 2**64."""
    digest = hashlib.blake2b(
        f"{player_id}\x1f{day}\x1f{action_type}".encode(), key=key, digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / _SCALE


def is_held_out(player_id: str, day: str, action_type: str, share: float, key: str | bytes) -> bool:
    """Is this player held out for ``action_type`` on ``day`` (``YYYY-MM-DD``, UTC)?"""
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    k = key.encode() if isinstance(key, str) else key
    return draw(player_id, day, action_type, k) < share
