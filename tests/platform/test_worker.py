"""Conformance: the devhost loads and invokes functions as the Python worker does.

Each test names the upstream source of the behaviour it pins (Azure/azure-functions-python-worker
4.34, the worker for Python 3.11, unless stated). docs/platform.md lists the same facts.
"""

from __future__ import annotations

import asyncio
import json
import time
import typing
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

import function_app
from devhost.functions_host import worker
from devhost.functions_host.indexing import _get_functions, index_app
from tests.apphost import APP_FUNCTIONS

SETTINGS = {
    "EVENTHUB_NAME": "player-events",
    "EVENTHUB_CONSUMER_GROUP": "$Default",
    "DURABLE_TASK_HUB": "h",
    "OUTBOX_REMINDER_QUEUE": "outbox-reminders",
}


def _load_all(app: Any) -> dict[str, worker.LoadedFunction]:
    out = {}
    for f in _get_functions(app):
        bindings = json.loads(f.get_function_json())["bindings"]
        out[f.get_function_name()] = worker.load(f.get_function_name(), f.get_user_function(), bindings)
    return out


def _one_trigger_app(annotation: Any) -> Any:
    app = df.DFApp()

    @app.event_hub_message_trigger(
        arg_name="events", event_hub_name="h", connection="C", cardinality="many", data_type="binary"
    )
    async def ingest(events) -> None:  # type: ignore[no-untyped-def]  # pragma: no cover
        pass

    ingest_fn = app._function_builders[0]._function._func
    ingest_fn.__annotations__["events"] = annotation
    return app


def test_the_real_app_loads_every_function() -> None:
    """functions.py Registry.add_function: what the worker runs when the host asks it to load."""
    loaded = _load_all(function_app.app)
    assert set(loaded) == APP_FUNCTIONS
    assert loaded["ingest"].requires_context and loaded["ingest"].is_async


def test_a_pep585_list_annotation_is_refused_and_typing_list_is_accepted() -> None:
    """functions.py validate_function_params: ``list[X]`` is neither a type nor (to the vendored
    typing_inspect) a generic type on 3.11: "invalid non-type annotation" (worker issue #1034)."""
    with pytest.raises(worker.FunctionLoadError, match="invalid non-type annotation"):
        _load_all(_one_trigger_app(list[func.EventHubEvent]))
    assert _load_all(_one_trigger_app(typing.List[func.EventHubEvent]))["ingest"]  # noqa: UP006


def test_a_refused_function_stops_the_devhost_like_the_host() -> None:
    """A function that fails to load never gets its listener: the devhost refuses to start."""
    with pytest.raises(worker.FunctionLoadError, match="cannot load the ingest function"):
        index_app(_one_trigger_app(list[func.EventHubEvent]), {})


def test_a_wrong_annotation_is_checked_by_the_binding_converter() -> None:
    """functions.py: check_input_type_annotation of the binding's converter (azure.functions)."""
    with pytest.raises(worker.FunctionLoadError, match='dataType "BINARY" .* annotation "HttpRequest"'):
        _load_all(_one_trigger_app(func.HttpRequest))


def test_context_must_be_annotated_as_context() -> None:
    """functions.py is_context_required: a parameter named ``context`` without a binding of that
    name gets the invocation context, and its annotation must be a class named Context."""
    app = df.DFApp()

    @app.route(route="x")
    def f(req: func.HttpRequest, context: str) -> func.HttpResponse:  # pragma: no cover
        return func.HttpResponse("")

    with pytest.raises(worker.FunctionLoadError, match='"context" parameter is expected'):
        _load_all(app)


def test_parameters_and_bindings_must_match() -> None:
    """functions.py validate_function_params: every parameter needs a binding and vice versa."""
    app = df.DFApp()

    @app.route(route="x")
    def f(req: func.HttpRequest, extra: str) -> func.HttpResponse:  # pragma: no cover
        return func.HttpResponse("")

    with pytest.raises(worker.FunctionLoadError, match="declared in Python but not in function.json"):
        _load_all(app)


def test_the_durable_client_parameter_is_rewritten_to_str_and_bound_as_generic() -> None:
    """azure-functions-durable 1.7 durable_app.py _add_rich_client sets the client's annotation to
    str; the worker then binds it with its GenericBinding (functions.py, bindings/generic.py): the
    host's client JSON arrives as the string that the SDK's wrapper turns into a client."""
    loaded = _load_all(function_app.app)
    assert loaded["ingest"].input_types["client"] == worker.ParamType("generic", str)
    assert worker.GenericBinding.decode(worker.Datum('{"a": 1}', "string"), trigger_metadata={}) == '{"a": 1}'


def test_a_function_without_return_binding_must_return_none() -> None:
    """dispatcher.py _handle__invocation_request: a non-None result without $return fails."""
    app = df.DFApp()

    @app.event_hub_message_trigger(arg_name="events", event_hub_name="h", connection="C", cardinality="many")
    def f(events: typing.List[func.EventHubEvent]) -> None:  # noqa: UP006  # pragma: no cover
        return "oops"  # type: ignore[return-value]

    fn = _load_all(app)["f"]
    from devhost.functions_host import bindings

    inv = worker.Invocation(
        inputs={"events": bindings.eventhub_data([], "binary")},
        trigger_metadata=bindings.eventhub_metadata(
            [], partition="0", hub="h", consumer_group="c", namespace="n"
        ),
    )
    with pytest.raises(RuntimeError, match="without a \\$return binding returned a non-None value"):
        asyncio.run(worker.invoke(fn, inv))


def test_the_retry_context_is_the_workers_dataclass() -> None:
    """bindings/retrycontext.py: retry_count, max_retry_count and rpc_exception (no ``exception``,
    although the azure.functions ABC declares one): the app reads only retry_count."""
    ctx = worker.RetryContext(2, -1)
    assert (ctx.retry_count, ctx.max_retry_count) == (2, -1) and not hasattr(ctx, "exception")
    source = open("functions/ingest.py", encoding="utf-8").read()
    assert "retry_context.exception" not in source and ".retry_count" in source


def test_the_apps_retry_intervals_parse_as_the_worker_parses_them() -> None:
    """loader.py: retry intervals are parsed with time.strptime('%H:%M:%S') and max_retry_count
    with int(); any strategy but fixed_delay is sent as exponential backoff."""
    [ingest] = [f for f in _get_functions(function_app.app) if f.get_function_name() == "ingest"]
    retry = ingest.get_settings_dict("retry_policy")
    assert retry["strategy"] == "exponential_backoff" and int(retry["max_retry_count"]) == -1
    for key in ("minimum_interval", "maximum_interval"):
        time.strptime(retry[key], "%H:%M:%S")
