"""Erasure records: what lets every copy of an erased player's data be found, and none come back.

An erasure (DELETE /api/players/{id}, run inside the player's entity) deletes the
player's actions and dead letters, and the dead letters filed under the
``unknown-NN`` buckets whose raw bytes carry the player id. Replays of the
erased history are dropped by the entity (its tombstone); but a replay also
re-runs ingest, which would write the erased player's dead letters again. So
the erasure first writes an *erasure record* to the ``erasures`` container,
and ingest consults those records (cached per process, refreshed every
``REFRESH_S``) before it writes a dead letter: a dead letter whose player id,
or any id-like token in its raw bytes, belongs to an erased player is not
written, only counted. A sweep ``SWEEP_DELAY_S`` after the erasure deletes what
an instance with a not-yet-refreshed cache may have written meanwhile.

The record holds a hash of the player id, not the id (keyed with
ERASURE_HASH_KEY), and expires after ``RECORD_TTL_S``, longer than
Event Hubs keeps events, so no replay can outlive it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable

from shared import config

log = logging.getLogger(__name__)

RECORD_TTL_S = 30 * 24 * 3600  # > Event Hubs retention (at most 7 days on Standard)
REFRESH_S = 60.0
RETRY_S = 5.0
SWEEP_DELAY_S = int(2 * REFRESH_S + 30)
# Ids are looked for as JSON string values ("player-00042"), so a short numeric id does not match
# every number in a payload.
_TOKEN = re.compile(rb'"([A-Za-z0-9_.:-]{1,128})"')


def erased_key(player_id: str) -> str:
    """The erasure record's id: a hash of the player id, never the id itself.

    Keyed (HMAC-SHA-256) with ``ERASURE_HASH_KEY``, a Key Vault reference in Azure, where a
    missing or unresolved key raises (``config.hash_key``): without a secret key, sequential ids
    could be recovered from the records by enumeration. Locally a key generated from the name is
    used. It is its own key, not the telemetry one, and must never be rotated while records made
    with it exist: a record made with another key no longer matches.
    """
    key = config.hash_key("ERASURE_HASH_KEY")
    return "er-" + hmac.new(key.encode(), player_id.encode(), hashlib.sha256).hexdigest()[:32]


def mentions(raw: bytes, player_id: str) -> bool:
    """Does ``raw`` carry ``player_id`` as a JSON string value (not inside a longer id or a number)?"""
    return b'"' + player_id.encode() + b'"' in raw


class ErasureIndex:
    """The erased players' keys, loaded from the erasure records and refreshed every REFRESH_S."""

    def __init__(
        self, load: Callable[[], Iterable[str]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._clock = clock
        self._keys: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def keys(self) -> frozenset[str]:
        """The erased keys. A refresh that fails keeps serving the keys loaded before (and tries
        again in a few seconds); only the very first load's failure raises (the batch retries)."""
        with self._lock:
            now = self._clock()
            if self._loaded_at is None or now - self._loaded_at >= REFRESH_S:
                try:
                    self._keys = frozenset(self._load())
                    self._loaded_at = now
                except Exception:
                    if self._loaded_at is None:
                        raise
                    log.warning("erasure records could not be refreshed; using the ones loaded before")
                    self._loaded_at = now - REFRESH_S + RETRY_S
            return self._keys

    def add(self, player_id: str) -> None:
        """This process erased the player: known at once, without waiting for a refresh."""
        with self._lock:
            self._keys = self._keys | {erased_key(player_id)}

    def concerns_erased(self, player_id: str | None, raw: bytes) -> bool:
        keys = self.keys()
        if not keys:
            return False
        if player_id and erased_key(player_id) in keys:
            return True
        return any(erased_key(t.decode()) in keys for t in set(_TOKEN.findall(raw)))
