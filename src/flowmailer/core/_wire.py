"""The one wire converter: camelCase JSON, Flowmailer's dates, base64 bytes, absent fields left out.

Text is read strictly only where it is input: a SubmitMessage (``send --json``, a stored outbox row) with a
non-string where a string belongs is refused, naming the camelCase key, since cattrs' default ``str()`` would
send ``5`` as "5" and an object as its Python repr. Flowmailer's responses are read tolerantly, field by field:
a number where text belongs is kept as its text; any other value that does not fit its field (a string where
an object belongs, ``null`` for a header's value) leaves the field at its default and is kept raw in the
model's ``extra`` mapping, with every key the model does not know. Flowmailer's published types and its
answers disagree in places, so one odd field must never make a page of events unreadable: an event follower
would ask for the same page for ever.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import types
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.errors import AttributeValidationNote, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from flowmailer.core._errors import ConfigurationError
from flowmailer.core._models import SubmitMessage

__all__ = [
    "dump_json",
    "format_date",
    "from_json",
    "message_from_json",
    "message_to_json",
    "parse_date",
    "wire_converter",
]

T = TypeVar("T")

wire_converter = cattrs.Converter()
#: Structures SubmitMessage alone: the same hooks, but text must be a JSON string.
_input_converter = cattrs.Converter()


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def format_date(value: datetime) -> str:
    """Flowmailer's request date format: UTC, whole seconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(value: str) -> datetime:
    """Accepts what Flowmailer answers (milliseconds optional, ``Z`` or an offset); always aware, in UTC."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.astimezone(UTC)


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not base64: {e}") from e


def _is_tolerant_enum(tp: Any) -> bool:
    """``SomeEnum | str``: a value the enum does not know yet stays a plain string."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return False
    args = set(typing.get_args(tp)) - {type(None)}
    return str in args and len(args) == 2 and all(a is str or issubclass(a, enum.Enum) for a in args)


def _structure_tolerant_enum(value: Any, tp: Any) -> Any:
    (enum_type,) = set(typing.get_args(tp)) - {type(None), str}
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    try:
        return enum_type(value)
    except ValueError:
        return value


def _identity(value: Any) -> Any:
    return value


#: Field types that need no conversion; skipping cattrs' per-value dispatch makes serialising ~2x faster.
_AS_IS: frozenset[Any] = frozenset({str, str | None, dict[str, Any] | None, dict[str, Any]})


def _field_hook(tp: Any, default: Any) -> Any:
    """A direct hook where cattrs would dispatch per value: fields omitted while None never see None."""
    if tp in _AS_IS:
        return _identity
    args = typing.get_args(tp)
    if default is None and typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 2:
        (inner,) = set(args) - {type(None)}
        return wire_converter.get_unstructure_hook(inner)
    if tp == tuple[str, ...]:
        return list
    return None


def _unstructure_attrs(cls: type[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    overrides: dict[str, Any] = {
        a.name: override(rename=_camel(a.name), unstruct_hook=_field_hook(hints[a.name], a.default))
        for a in attrs.fields(cls)
    }
    if "extra" in overrides:
        overrides["extra"] = override(omit=True)  # merged back in by _unstructure_response
    if cls is SubmitMessage:
        overrides["message_type"] = override(rename="messageType", omit_if_default=False)
    return make_dict_unstructure_fn(cls, wire_converter, _cattrs_omit_if_default=True, **overrides)


#: What a response's field may fail with; the field then keeps its default and its raw value goes to ``extra``.
_FIELD_ERRORS = (ValueError, TypeError, KeyError, ConfigurationError, cattrs.BaseValidationError)


def _structure_response(cls: type[Any]) -> Any:
    """Field by field: an unknown key, or a value its field cannot hold, goes to ``extra`` (when the model has it).

    A field without a default (a report sample's ``timestamp``) is one the client cannot do without, and a field
    marked ``metadata={"strict": True}`` one it must not misread (a report's counts): a value that does not fit
    either refuses the object, naming the key.
    """
    hints = typing.get_type_hints(cls)
    by_key = {_camel(a.name): a for a in attrs.fields(cls) if a.init and a.name != "extra"}
    keeps_extra = "extra" in attrs.fields_dict(cls)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _WrongShapeError
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, raw in value.items():
            field = by_key.get(key)
            if field is None:
                extra[key] = raw
                continue
            required = field.default is attrs.NOTHING
            if raw is None and not required:
                continue
            try:
                kwargs[field.name] = wire_converter.structure(raw, hints[field.name])
            except _FIELD_ERRORS as e:
                if required or field.metadata.get("strict"):
                    raise _MissingFieldError(key, raw, hints[field.name]) from e
                extra[key] = raw
        for key, field in by_key.items():
            if field.default is attrs.NOTHING and field.name not in kwargs:
                raise _MissingFieldError(key, _MISSING, hints[field.name])
        if keeps_extra:
            kwargs["extra"] = extra
        return cls(**kwargs)

    return structure


def _unstructure_response(cls: type[Any]) -> Any:
    """The model's fields, then what ``extra`` kept, so that a response read and written again is the same JSON."""
    fields = _unstructure_attrs(cls)

    def unstructure(value: Any) -> Any:
        return {**value.extra, **fields(value)}

    return unstructure


class _MissingFieldError(TypeError):
    """A field a response model cannot do without is missing or holds a value of the wrong kind."""

    def __init__(self, key: str, value: Any, tp: Any) -> None:
        self.key, self.value, self.tp = key, value, tp
        super().__init__(key)


def _response_text(value: Any, _: Any) -> str:
    """Text, or a number as its JSON text; anything else (``null``, an object) does not fit a string field."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    raise TypeError("not text")


def _response_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise TypeError("not a whole number")


def _response_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise TypeError("not a boolean")


def _response_tuple(tp: Any) -> Any:
    """A JSON array only: cattrs would read text one character at a time and an object as its keys."""
    elements = homogenous_tuple_structure_factory(tp, wire_converter)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, list):
            raise _WrongShapeError
        return elements(value, tp)

    return structure


def _structure_attrs(cls: type[Any], converter: cattrs.Converter) -> Any:
    overrides: dict[str, Any] = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
    structure_fields = make_dict_structure_fn(cls, converter, **overrides)

    def structure(value: Any, tp: Any) -> Any:
        # cattrs would read a string or a list as an object with every field absent.
        if not isinstance(value, dict):
            raise _WrongShapeError
        return structure_fields(value, tp)

    return structure


class _WrongShapeError(TypeError):
    """A JSON value of the wrong kind; what was expected comes from the field's type, where the error is read."""


def _input_tuple(tp: Any, converter: cattrs.Converter) -> Any:
    """A list field of input takes a JSON array only: cattrs would read text one character at a time."""
    elements = homogenous_tuple_structure_factory(tp, converter)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, list):
            raise _WrongShapeError
        return elements(value, tp)

    return structure


def _input_object(value: Any, _: Any) -> Any:
    if not isinstance(value, dict):
        raise _WrongShapeError
    return value


class _NotTextError(TypeError):
    """A JSON value other than a string where input text belongs."""

    def __init__(self, value: Any) -> None:
        self.value = value
        kind = "a JSON object" if isinstance(value, dict) else "a JSON array" if isinstance(value, list) else None
        super().__init__(f"is {kind or json.dumps(value)}, not a string")


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise _NotTextError(value)
    return value


wire_converter.register_unstructure_hook(datetime, format_date)
wire_converter.register_unstructure_hook(bytes, lambda v: base64.b64encode(v).decode("ascii"))


def _keeps_extra(cls: Any) -> bool:
    return attrs.has(cls) and "extra" in attrs.fields_dict(cls)


wire_converter.register_unstructure_hook_factory(attrs.has, _unstructure_attrs)
wire_converter.register_unstructure_hook_factory(_keeps_extra, _unstructure_response)
for _converter in (wire_converter, _input_converter):
    _converter.register_structure_hook(datetime, lambda v, _: parse_date(v))
    _converter.register_structure_hook(bytes, lambda v, _: _b64decode(v))
    _converter.register_structure_hook_func(lambda t: t is object, lambda v, _: v)
    _converter.register_structure_hook_func(_is_tolerant_enum, _structure_tolerant_enum)
    _converter.register_structure_hook_func(lambda t: t == dict[str, Any], _input_object)
_input_converter.register_structure_hook_factory(attrs.has, lambda cls: _structure_attrs(cls, _input_converter))
_input_converter.register_structure_hook(str, _strict_str)
wire_converter.register_structure_hook_factory(attrs.has, _structure_response)
wire_converter.register_structure_hook(str, _response_text)
wire_converter.register_structure_hook(int, _response_int)
wire_converter.register_structure_hook(bool, _response_bool)


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


_input_converter.register_structure_hook_factory(_is_tuple, lambda t: _input_tuple(t, _input_converter))
wire_converter.register_structure_hook_factory(_is_tuple, _response_tuple)

_EXAMPLE_DATE = "2026-01-31T12:00:00Z"
_MISSING = object()


def _expected(tp: Any) -> str:
    """A field's type in JSON terms, never Python's (``datetime.datetime | None``)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if _is_tolerant_enum(tp):
            return "a string"
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_expected(a) for a in inner) + (" or null" if len(inner) < len(args) else "")
    if typing.get_origin(tp) is tuple:
        return "an array of strings" if args[0] is str else "an array of objects"
    if typing.get_origin(tp) is dict or tp is dict:
        return "a JSON object"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(json.dumps(m.value) for m in tp)
    known = {str: "a string", bytes: "base64 text", datetime: f"an ISO 8601 date-time such as {_EXAMPLE_DATE}"}
    known |= {bool: "true or false", int: "a whole number", float: "a number"}
    return known.get(tp) or ("a JSON object" if attrs.has(tp) else "a JSON value of another kind")


def _given(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return "an array" if isinstance(value, list) else "an object"


def _leaves(error: BaseException, value: Any, tp: Any, path: str = "") -> Iterator[tuple[str, Any, Any, BaseException]]:
    """Each failure inside cattrs' exception groups: its camelCase path, the JSON value there and the field type."""
    inner_errors = getattr(error, "exceptions", None)
    if inner_errors is None:
        yield path, value, tp, error
        return
    for inner in inner_errors:
        step, there, inner_tp = path, value, tp
        for note in getattr(inner, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                key = _camel(note.name)
                step = f"{path}.{key}" if path else key
                there = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
                inner_tp = note.type
            elif isinstance(note, IterableValidationNote):
                step = f"{path}[{note.index}]"
                index = note.index
                ok = isinstance(value, list) and isinstance(index, int) and index < len(value)
                there = value[index] if ok else _MISSING
                inner_tp = note.type
        yield from _leaves(inner, there, inner_tp, step)


def _own_field(path: str, field: str) -> str:
    """A model's error at ``path`` (``headers[1]``) in JSON terms: ``header.value`` becomes ``headers[1].value``."""
    if path:
        return f"{path}.{_camel(field.rpartition('.')[2])}"
    return ".".join(_camel(part) for part in field.split("."))


def from_json(data: bytes, cls: type[T], *, what: str, fix: str) -> T:
    """Decode a JSON body into ``cls``; anything that does not fit is a ConfigurationError naming ``what``.

    A SubmitMessage is input and its text is read strictly; every other type is a response (see the module).
    Input errors name the camelCase key path (``headers[1].value``) and say what JSON value belongs there.
    """
    converter = _input_converter if cls is SubmitMessage else wire_converter
    args = typing.get_args(cls)
    name = f"list of {args[0].__name__}" if args else getattr(cls, "__name__", "value")
    try:
        parsed = json.loads(data)
    except ValueError as e:
        raise ConfigurationError(what, f"is not JSON ({e})", fix) from e
    try:
        return converter.structure(parsed, cls)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as e:
        path, value, tp, leaf = next(_leaves(e, parsed, cls))
        if isinstance(leaf, _MissingFieldError):
            path, value, tp = (f"{path}.{leaf.key}" if path else leaf.key), leaf.value, leaf.tp
        if isinstance(leaf, ConfigurationError):
            own = ConfigurationError(_own_field(path, leaf.field), leaf.problem, leaf.fix)
            raise (own if cls is SubmitMessage else leaf) from e
        if isinstance(leaf, _NotTextError):
            example = f' ("{json.dumps(leaf.value)}")' if isinstance(leaf.value, bool | int | float) else ""
            raise ConfigurationError(path, str(leaf), f"give text in double quotes{example}") from e
        problem = "is missing" if value is _MISSING else f"is {_given(value)}, not {_expected(tp)}"
        if isinstance(value, str) and (set(typing.get_args(tp)) | {tp}) & {datetime, bytes}:
            problem += f" ({leaf})"  # parse_date's and base64's own words: no time zone, not base64
        if cls is SubmitMessage and path:
            missing = value is _MISSING
            hint = f"add {path}" if missing else f"give {_expected(tp)}"
            raise ConfigurationError(path, problem, hint if missing else f"{hint}; {fix}") from e
        at = f"{path} " if path else ""
        raise ConfigurationError(what, f"does not hold a valid {name}: {at}{problem}", fix) from e


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dump_json(value: Any) -> bytes:
    """Compact ASCII JSON: a lone surrogate becomes an escape, never an encoding error."""
    return _ENCODER.encode(value).encode("ascii")


def message_to_json(message: SubmitMessage) -> bytes:
    """The submit body."""
    return dump_json(wire_converter.unstructure(message))


def message_from_json(data: bytes) -> SubmitMessage:
    """A stored message back, validated again: stored data is input too."""
    return from_json(data, SubmitMessage, what="message", fix="the stored copy is damaged; enqueue it again")
