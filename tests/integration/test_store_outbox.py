"""A player's outbox through the real ActionStore: suppressed aggregates, transactional batches where
the service runs them, concurrent writes where it does not, the write counts, the HTTP session.

Against a real @vercel/cosmosdb-server on loopback. That server runs no transactional batches, so the
batch path is tested with the real SDK building the batch request and a transport that passes every
other request through to the server and answers the batch request itself, as Azure Cosmos DB would
(``BatchAnsweringTransport``): the only stand-in here, because no local server runs batches."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from azure.core.pipeline.transport import RequestsTransport, RequestsTransportResponse
from azure.cosmos import CosmosClient

from shared import entity as st
from shared.config import CosmosSettings
from shared.store import RETRY_KWARGS, ActionStore, Write, make_transport, suppressed_document
from tests.helpers import T0_MS

pytestmark = pytest.mark.cosmos


def action(player: str, trigger: str) -> dict[str, Any]:
    return {
        "id": st.action_id(player, trigger, "break_suggestion"),
        "playerId": player,
        "type": "break_suggestion",
        "status": "pending",
        "eventTime": "2026-11-21T10:00:00.000Z",
    }


def aggregate(player: str, count: int, rule: str = "cooldown") -> dict[str, Any]:
    hour = T0_MS - T0_MS % st.HOUR_MS
    agg = st.SuppressedAggregate(
        st.suppressed_id(player, hour, "bonus_offer", rule), "bonus_offer", rule, hour, count,
        hour + 5, hour + 60_000, "m", T0_MS,
        examples=[st.SuppressedExample("e1", hour + 5, 0.8, [0.5] * 24)],
    )  # fmt: skip
    return suppressed_document(player, agg)


class BatchAnsweringTransport(RequestsTransport):
    """Every request goes to the local server, except a transactional batch, which it records and
    answers as Azure Cosmos DB does (one result per operation; ``conflict_on`` answers 409 for those
    ids and 424 for the others, and the whole batch is then not applied)."""

    def __init__(self, conflict_on: frozenset[str] = frozenset()) -> None:
        super().__init__(use_env_settings=False)
        self.batches: list[tuple[dict[str, str], list[dict[str, Any]]]] = []
        self.conflict_on = conflict_on

    def send(self, request: Any, **kwargs: Any) -> Any:
        if request.headers.get("x-ms-cosmos-is-batch-request") != "True":
            return super().send(request, **kwargs)
        ops = json.loads(request.data if request.data is not None else request.body)
        self.batches.append((dict(request.headers), ops))
        ids = [(op.get("resourceBody") or {}).get("id", op.get("id")) for op in ops]
        if any(i in self.conflict_on for i in ids):
            results = [{"statusCode": 409 if i in self.conflict_on else 424} for i in ids]
        elif ops[0]["operationType"] == "Read":  # the capability probe: nothing there
            results = [{"statusCode": 404}]
        else:
            codes = {"Create": 201, "Upsert": 200}
            results = [{"statusCode": codes[op["operationType"]], "requestCharge": 1.0} for op in ops]
        raw = requests.models.Response()
        raw.status_code = 200
        raw._content = json.dumps(results).encode()
        raw.headers.update({"content-type": "application/json", "x-ms-request-charge": "1"})
        raw.url = request.url
        return RequestsTransportResponse(request, raw)


def client_with(settings: CosmosSettings, transport: RequestsTransport) -> CosmosClient:
    return CosmosClient(
        settings.endpoint,
        credential=settings.key,
        enable_endpoint_discovery=False,
        transport=transport,
        **RETRY_KWARGS,
    )


def test_the_local_server_runs_no_batches_so_the_outbox_is_written_concurrently(store: ActionStore) -> None:
    writes = [Write("create", action("p1", f"e{i}")) for i in range(12)] + [
        Write("upsert", aggregate("p1", 3))
    ]
    report = store.write_outbox("p1", writes)
    assert store.supports_batch() is False  # asked once, remembered
    assert report.written == {w.doc["id"] for w in writes} and not report.failed and not report.refused
    docs = {d["id"]: d for d in store.player_actions("p1")}
    assert len(docs) == 13 and docs[writes[-1].doc["id"]]["count"] == 3
    assert store.write_counts() == {
        "action": 12,
        "suppressed": 1,
        "outcome": 0,
        "shadow": 0,
        "deadletter": 0,
        "erasure": 0,
    }
    assert store.writes_per_action() == round(13 / 12, 3)


def test_an_aggregate_is_replaced_not_added_to_and_a_repeated_create_counts_as_written(
    store: ActionStore,
) -> None:
    first = store.write_outbox(
        "p2", [Write("create", action("p2", "e1")), Write("upsert", aggregate("p2", 4))]
    )
    again = store.write_outbox(
        "p2", [Write("create", action("p2", "e1")), Write("upsert", aggregate("p2", 4))]
    )
    assert first.written == again.written and len(first.written) == 2
    more = store.write_outbox("p2", [Write("upsert", aggregate("p2", 9))])
    assert more.written and [
        d["count"] for d in store.player_actions("p2") if d["status"] == "suppressed"
    ] == [9]
    # the repeated create found its document: not a write; each upsert is one
    assert store.write_counts()["action"] == 1 and store.write_counts()["suppressed"] == 3


def test_where_batches_run_a_players_outbox_is_one_request(cosmos_settings: CosmosSettings) -> None:
    transport = BatchAnsweringTransport()
    store = ActionStore(cosmos_settings, client=client_with(cosmos_settings, transport))
    writes = [Write("create", action("p3", f"e{i}")) for i in range(3)] + [
        Write("upsert", aggregate("p3", 2))
    ]
    report = store.write_outbox("p3", writes)
    assert store.supports_batch() is True
    assert report.written == {w.doc["id"] for w in writes}
    probe, batch = transport.batches  # the capability probe, then one request for the four documents
    assert [op["operationType"] for op in probe[1]] == ["Read"]
    headers, ops = batch
    assert headers["x-ms-cosmos-batch-atomic"] == "True"
    assert json.loads(headers["x-ms-documentdb-partitionkey"]) == ["p3"]
    assert [op["operationType"] for op in ops] == ["Create", "Create", "Create", "Upsert"]
    assert all(op["resourceBody"]["ttl"] == cosmos_settings.action_ttl_seconds for op in ops)
    assert store.write_counts()["action"] == 3 and store.write_counts()["suppressed"] == 1


def test_a_batch_refused_for_one_existing_action_is_written_one_by_one(
    cosmos_settings: CosmosSettings,
) -> None:
    """A replayed decision whose action exists fails the atomic batch with 409: nothing of it was
    applied, so every document is written on its own, the existing one counting as written."""
    existing = action("p4", "e0")
    ActionStore(cosmos_settings).create_action(existing)
    transport = BatchAnsweringTransport(conflict_on=frozenset({existing["id"]}))
    store = ActionStore(cosmos_settings, client=client_with(cosmos_settings, transport))
    writes = [
        Write("create", existing),
        Write("create", action("p4", "e1")),
        Write("upsert", aggregate("p4", 5)),
    ]
    report = store.write_outbox("p4", writes)
    assert report.written == {w.doc["id"] for w in writes} and not report.failed
    assert len(transport.batches) == 2  # the probe, the refused batch; then the server, one by one
    assert {d["id"] for d in store.player_actions("p4")} == {w.doc["id"] for w in writes}
    assert store.write_counts()["action"] == 1  # only the new action was created


def test_the_session_reads_no_environment_per_request_unless_a_proxy_is_set() -> None:
    plain = make_transport({"PATH": "/usr/bin", "REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem"})
    assert plain.session.trust_env is False and plain.session.verify == "/etc/ssl/bundle.pem"
    proxied = make_transport({"https_proxy": "http://proxy.example:3128"})
    assert proxied.session.trust_env is True
    adapter = plain.session.get_adapter("https://acct.documents.azure.com")
    assert adapter._pool_maxsize >= 8 and adapter.max_retries.total is False


def test_a_hostile_player_makes_a_bounded_number_of_cosmos_writes(store: ActionStore) -> None:
    """20,000 triggering events of one player in one hour of event time, in signals of 250 (an ingest
    batch each): every scored trigger a guardrail stopped is counted, and the documents written are
    the actions plus at most one aggregate write per (type, rule) and operation. One document per
    suppressed decision made ~10,000 documents of this input."""
    from datetime import UTC, datetime, timedelta

    from shared import signals
    from shared.events import make_event, parse
    from shared.model import get_model
    from shared.player import run_operation
    from shared.policy import Rules

    model = get_model()
    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    state: Any = None
    n, per_signal = 20_000, 250
    suppressed = operations = 0
    actions: set[str] = set()
    for b in range(0, n, per_signal):
        events = []
        for i in range(b, b + per_signal):
            at = start + timedelta(milliseconds=i * 175)  # 20,000 events in 58 minutes
            kind = "deposit.made" if i % 40 == 39 else "round.completed"  # as the reliability flood
            data = (
                {"amount": 20.0} if kind == "deposit.made" else {"stake": 5.0, "payout": 3.0 * (i % 3 == 0)}
            )
            body = json.dumps(make_event(f"h{i}", kind, "hostile", at, dict(data, game="slots"))).encode()
            now = int((at + timedelta(seconds=5)).timestamp() * 1000)
            events.append(parse(body, now_ms=now, partition="0", sequence=i).to_signal())  # type: ignore[union-attr]
        signal = signals.encode(signals.Signal(events, [("0", b, b + per_signal - 1)]))
        out = run_operation(
            "hostile", "events", state, signal,
            now_ms=now, scorer=model.score, model_version=model.version, rules=Rules(), store=store,
        )  # fmt: skip
        operations += 1
        state = out.state
        assert not state.outbox  # everything written in the operation that decided it
        suppressed += len(out.effects.suppressed)
        actions |= {a.id for a in out.effects.actions}
    docs = store.player_actions("hostile")
    aggregates = [d for d in docs if d["status"] == "suppressed"]
    assert suppressed > 5_000, "the input must make many suppressed decisions to mean anything"
    assert sum(d["count"] for d in aggregates) == suppressed  # counted, none lost, none doubled
    assert len(aggregates) <= 21 and len(docs) == len(actions) + len(aggregates)
    counts = store.write_counts()
    assert counts["action"] == len(actions)
    assert counts["suppressed"] <= operations * len(aggregates), counts
    assert all(len(d["examples"]) <= st.SUPPRESSED_EXAMPLES for d in aggregates)
