"""What the Python worker does with the app: the load-time checks, and each invocation.

The devhost must refuse what the real worker refuses, and hand functions what
the real worker hands them. This module follows the worker's code (Azure/
azure-functions-python-worker 4.34, the worker for Python 3.11) step by step,
using the same azure.functions converters the worker uses:

- ``load``: ``functions.py`` ``Registry.add_function`` -> ``validate_binding_direction``,
  ``is_context_required``, ``validate_function_params`` (annotations resolved with
  ``typing.get_type_hints``; a non-type annotation such as ``list[X]`` is refused;
  each annotation is checked by its binding's converter, or by the worker's
  ``GenericBinding`` for a str/bytes annotation or an unknown binding) and
  ``get_function_return_type``.
- ``invoke``: ``dispatcher.py`` ``_handle__invocation_request`` -> every input decoded
  by its converter (``bindings/meta.py`` ``from_incoming_proto``: trigger metadata
  only for the trigger), ``context`` built from the invocation's retry and trace
  context (``_get_context``), async functions awaited on the loop and sync ones run
  in a thread pool, a non-None result without a ``$return`` binding refused, and the
  return value encoded by the return binding's converter (``to_outgoing_proto``).

The devhost has no gRPC: a ``Datum`` stands where the worker builds one from the
host's ``TypedData`` (``bindings/datumdef.py`` ``Datum.from_typed_data``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
import typing
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions import _abc, meta
from azure.functions._thirdparty import typing_inspect

Datum = meta.Datum


class FunctionLoadError(RuntimeError):
    """The worker's own error: the function fails to load and the host never starts its trigger."""

    def __init__(self, function_name: str, msg: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {msg}")


class GenericBinding:
    """The worker's fallback binding (``bindings/generic.py``), not part of azure.functions."""

    @classmethod
    def has_trigger_support(cls) -> bool:
        return False

    @classmethod
    def check_input_type_annotation(cls, pytype: type) -> bool:
        return issubclass(pytype, (str, bytes))

    @classmethod
    def check_output_type_annotation(cls, pytype: type) -> bool:
        return issubclass(pytype, (str, bytes, bytearray))

    @classmethod
    def decode(cls, data: Datum | None, *, trigger_metadata: Any) -> Any:
        if data is None or data.type is None:
            return None
        if data.type in ("string", "bytes", "json"):
            return data.value
        raise ValueError(f'unexpected type of data received for the "generic" binding : {data.type!r}')

    @classmethod
    def encode(cls, obj: Any, *, expected_type: type | None) -> Datum:
        if isinstance(obj, str):
            return Datum(type="string", value=obj)
        if isinstance(obj, (bytes, bytearray)):
            return Datum(type="bytes", value=bytes(obj))
        if obj is None:
            return Datum(type=None, value=obj)
        raise NotImplementedError

    @classmethod
    def has_implicit_output(cls, bind_name: str | None = None) -> bool:
        return bind_name != "durableClient"


def get_binding(name: str) -> Any:
    """``bindings/meta.py`` ``get_binding``: the library's converter, else the generic binding."""
    return func.get_binding_registry().get(name) or GenericBinding


def has_implicit_output(name: str) -> bool:
    binding = get_binding(name)
    if binding is GenericBinding:
        return GenericBinding.has_implicit_output(name)
    return bool(getattr(binding, "has_implicit_output", lambda: False)())


def is_trigger_binding(name: str) -> bool:
    return bool(get_binding(name).has_trigger_support())


@dataclass(frozen=True)
class ParamType:
    binding: str  # the converter's binding name ("generic" for a str/bytes parameter)
    pytype: Any


@dataclass
class LoadedFunction:
    """The worker's ``FunctionInfo``."""

    name: str
    func: Callable[..., Any]
    bindings: list[dict[str, Any]]
    requires_context: bool
    is_async: bool
    has_return: bool
    input_types: dict[str, ParamType]
    output_types: dict[str, ParamType]
    return_type: ParamType | None
    directory: str = ""

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if str(b.get("type", "")).endswith("Trigger"))


def _direction(binding: Mapping[str, Any]) -> str:
    return str(binding.get("direction", "IN")).upper()


def load(name: str, user_func: Callable[..., Any], bindings: list[dict[str, Any]]) -> LoadedFunction:
    """Check a function as ``Registry.add_function`` does; raise ``FunctionLoadError`` as it would."""
    params = dict(inspect.signature(user_func).parameters)
    try:
        annotations = typing.get_type_hints(user_func)
    except Exception as exc:  # the worker lets this escape: the function does not load
        raise FunctionLoadError(name, f"cannot resolve annotations: {exc}") from exc
    bound: dict[str, dict[str, Any]] = {}
    explicit_return = implicit_return = False
    return_binding: str | None = None
    explicit_return_set = False
    for b in bindings:
        bname, btype, direction = str(b["name"]), str(b["type"]), _direction(b)
        if direction == "INOUT":
            raise FunctionLoadError(name, '"inout" bindings are not supported')
        if bname == "$return" and direction != "OUT":
            raise FunctionLoadError(name, '"$return" binding must have direction set to "out"')
        if bname == "$return":
            explicit_return = True
        elif has_implicit_output(btype):
            implicit_return = True
            bound[bname] = b
        else:
            bound[bname] = b
        if not explicit_return_set:  # get_return_binding: an explicit $return wins
            if bname == "$return":
                return_binding, explicit_return_set = btype, True
            elif has_implicit_output(btype):
                return_binding = btype

    requires_context = False
    if "context" in params and "context" not in bound:
        requires_context = True
        params.pop("context")
        anno = annotations.get("context")
        if "context" in annotations and (not isinstance(anno, type) or anno.__name__ != "Context"):
            raise FunctionLoadError(
                name,
                f'the "context" parameter is expected to be of type azure.functions.Context, got {anno!r}',
            )
    if set(params) - set(bound):
        raise FunctionLoadError(
            name,
            "the following parameters are declared in Python but not in function.json: "
            f"{set(params) - set(bound)!r}",
        )
    if set(bound) - set(params):
        raise FunctionLoadError(
            name,
            "the following parameters are declared in function.json but not in Python: "
            f"{set(bound) - set(params)!r}",
        )

    inputs: dict[str, ParamType] = {}
    outputs: dict[str, ParamType] = {}
    for param in params.values():
        b = bound[param.name]
        has_anno = param.name in annotations
        anno = annotations.get(param.name)
        is_out = _is_out(anno) if has_anno else False
        pytype = anno
        if is_out:
            args = typing_inspect.get_args(anno)
            if len(args) != 1:
                raise FunctionLoadError(name, f"binding {param.name} has invalid Out annotation {anno!r}")
            pytype = args[0]
        if has_anno and not isinstance(pytype, type) and not typing_inspect.is_generic_type(pytype):
            raise FunctionLoadError(name, f"binding {param.name} has invalid non-type annotation {anno!r}")
        binding_out = _direction(b) == "OUT"
        if binding_out and has_anno and not is_out:
            raise FunctionLoadError(
                name,
                f'binding {param.name} is declared to have the "out" direction, but its annotation in '
                "Python is not a subclass of azure.functions.Out",
            )
        if not binding_out and is_out:
            raise FunctionLoadError(
                name,
                f'binding {param.name} is declared to have the "in" direction in function.json, but its '
                "annotation is azure.functions.Out in Python",
            )
        btype = str(b["type"])
        bind = "generic" if has_anno and pytype in (str, bytes) and not has_implicit_output(btype) else btype
        if has_anno:
            converter = get_binding(bind)
            ok = (
                converter.check_output_type_annotation(pytype)
                if is_out
                else converter.check_input_type_annotation(pytype)
            )
            if not ok:
                type_name = getattr(pytype, "__name__", repr(pytype))
                if b.get("dataType") not in (None, "", "UNDEFINED"):
                    raise FunctionLoadError(
                        name,
                        f'{param.name!r} binding type "{btype}" and dataType "{b.get("dataType")}" in '
                        f"function.json do not match the corresponding function parameter's Python type "
                        f'annotation "{type_name}"',
                    )
                raise FunctionLoadError(
                    name,
                    f'type of {param.name} binding in function.json "{btype}" does not match its Python '
                    f'annotation "{type_name}"',
                )
        (outputs if binding_out else inputs)[param.name] = ParamType(bind, pytype)

    return_type: ParamType | None = None
    if explicit_return and "return" in annotations:
        ret = annotations["return"]
        if not isinstance(ret, type):
            raise FunctionLoadError(name, f"has invalid non-type return annotation {ret!r}")
        assert return_binding is not None
        if not get_binding(return_binding).check_output_type_annotation(ret):
            raise FunctionLoadError(
                name,
                f'Python return annotation "{ret.__name__}" does not match binding type "{return_binding}"',
            )
    if explicit_return or implicit_return:
        return_type = ParamType(str(return_binding), annotations.get("return"))
    try:
        directory = os.path.dirname(inspect.getfile(user_func))
    except TypeError:
        directory = ""
    return LoadedFunction(
        directory=directory,
        name=name,
        func=user_func,
        bindings=bindings,
        requires_context=requires_context,
        is_async=inspect.iscoroutinefunction(user_func),
        has_return=explicit_return or implicit_return,
        input_types=inputs,
        output_types=outputs,
        return_type=return_type,
    )


def _is_out(anno: Any) -> bool:
    if typing_inspect.is_generic_type(anno):
        origin = typing_inspect.get_origin(anno)
        target = origin if origin is not None else anno
    else:
        target = anno
    return isinstance(target, type) and target.__name__ == "Out"


# -- invocation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryContext:
    """``bindings/retrycontext.py``: the worker's retry context is a plain dataclass.

    ``retry_count`` is 0 on the first attempt and n on the n-th retry; ``max_retry_count``
    is -1 for an unlimited policy and 0 without one. Note: it has ``rpc_exception``, not
    the ``exception`` that the azure.functions ABC declares; code must not rely on that.
    """

    retry_count: int = 0
    max_retry_count: int = 0
    rpc_exception: Any = None


class TraceContext(_abc.TraceContext):
    def __init__(self, trace_parent: str = "", trace_state: str = "") -> None:
        self._parent, self._state = trace_parent, trace_state

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return self._state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


_invocation_local = threading.local()


class Context:
    """``bindings/context.py``: duck-typed, not a subclass of the azure.functions ABC."""

    def __init__(self, name: str, directory: str, invocation_id: str, retry: RetryContext) -> None:
        self._name, self._dir, self._id, self._retry = name, directory, invocation_id, retry
        self._trace = TraceContext()

    # The worker's TraceContext also answers to these aliases; the devhost starts no host trace.

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> Any:
        return _invocation_local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return self._dir

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return self._retry


class Out(func.Out[Any]):
    """``bindings/out.py``: the value an output binding parameter was set to."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass
class Invocation:
    """One InvocationRequest: a datum per input binding, the trigger metadata, the retry context."""

    inputs: dict[str, Datum]
    trigger_metadata: dict[str, Datum] = field(default_factory=dict)
    retry: RetryContext = field(default_factory=RetryContext)
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def decode_inputs(fn: LoadedFunction, inv: Invocation) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pname, datum in inv.inputs.items():
        ptype = fn.input_types[pname]
        binding = get_binding(ptype.binding)
        metadata = inv.trigger_metadata if is_trigger_binding(ptype.binding) else {}
        try:
            args[pname] = binding.decode(datum, trigger_metadata=metadata)
        except NotImplementedError:
            raise TypeError(
                f"unable to decode incoming TypedData: unsupported combination of TypedData field "
                f"{datum.type!r} and expected binding type {binding}"
            ) from None
    return args


async def invoke(fn: LoadedFunction, inv: Invocation, executor: Executor | None = None) -> Datum | None:
    """Run one invocation as the dispatcher does; returns the encoded return value (or None)."""
    args = decode_inputs(fn, inv)
    ctx = Context(fn.name, fn.directory, inv.invocation_id, inv.retry)
    if fn.requires_context:
        args["context"] = ctx
    for name in fn.output_types:
        args[name] = Out()
    if fn.is_async:
        result = await fn.func(**args)
    else:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, lambda: fn.func(**args))
    if result is not None and not fn.has_return:
        raise RuntimeError(f"function {fn.name!r} without a $return binding returned a non-None value")
    if fn.return_type is None:
        return None
    binding = get_binding(fn.return_type.binding)
    datum: Datum = binding.encode(result, expected_type=fn.return_type.pytype)
    return datum


def datum_json(value: Any) -> Datum:
    return Datum(json.dumps(value), "json")
