"""The one wire converter: camelCase JSON, Flowmailer's dates, base64 bytes, absent fields left out.

Text is read strictly only where it is input: a SubmitMessage (``send --json``, a stored outbox row) with a
non-string where a string belongs is refused, naming the camelCase key, since cattrs' default ``str()`` would
send ``5`` as "5" and an object as its Python repr. Flowmailer's responses are read tolerantly: a number where
text belongs is kept as its text, so a type Flowmailer changes does not break reading events or messages.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import types
import typing
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
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
E = TypeVar("E", bound=BaseException)

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
    if cls is SubmitMessage:
        overrides["message_type"] = override(rename="messageType", omit_if_default=False)
    return make_dict_unstructure_fn(cls, wire_converter, _cattrs_omit_if_default=True, **overrides)


def _structure_attrs(cls: type[Any], converter: cattrs.Converter) -> Any:
    overrides: dict[str, Any] = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
    structure_fields = make_dict_structure_fn(cls, converter, **overrides)

    def structure(value: Any, tp: Any) -> Any:
        # cattrs would read a string or a list as an object with every field absent.
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(value).__name__}")
        return structure_fields(value, tp)

    return structure


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
wire_converter.register_unstructure_hook_factory(attrs.has, _unstructure_attrs)
for _converter in (wire_converter, _input_converter):
    _converter.register_structure_hook(datetime, lambda v, _: parse_date(v))
    _converter.register_structure_hook(bytes, lambda v, _: _b64decode(v))
    _converter.register_structure_hook_func(lambda t: t is object, lambda v, _: v)
    _converter.register_structure_hook_func(_is_tolerant_enum, _structure_tolerant_enum)
    _converter.register_structure_hook_factory(attrs.has, _structure_attrs)
_input_converter.register_structure_hook(str, _strict_str)


def _describe(error: Exception) -> str:
    if isinstance(error, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(error))
    return str(error)


def _find(error: BaseException, kind: type[E], path: str = "") -> tuple[str, E] | None:
    """The first ``kind`` inside cattrs' exception groups, with its camelCase path (``headers[1].value``)."""
    if isinstance(error, kind):
        return path, error
    for inner in getattr(error, "exceptions", ()):
        step = path
        for note in getattr(inner, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                step = f"{path}.{_camel(note.name)}" if path else _camel(note.name)
            elif isinstance(note, IterableValidationNote):
                step = f"{path}[{note.index}]"
        found = _find(inner, kind, step)
        if found is not None:
            return found
    return None


def from_json(data: bytes, cls: type[T], *, what: str, fix: str) -> T:
    """Decode a JSON body into ``cls``; anything that does not fit is a ConfigurationError naming ``what``.

    A SubmitMessage is input and its text is read strictly; every other type is a response (see the module).
    """
    converter = _input_converter if cls is SubmitMessage else wire_converter
    try:
        return converter.structure(json.loads(data), cls)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as e:
        not_text = _find(e, _NotTextError)
        if not_text is not None:
            path, error = not_text
            example = f' ("{json.dumps(error.value)}")' if isinstance(error.value, bool | int | float) else ""
            raise ConfigurationError(path, str(error), f"give text in double quotes{example}") from e
        own = _find(e, ConfigurationError)
        if own is not None:
            raise own[1] from e
        raise ConfigurationError(what, f"does not hold a valid {cls.__name__}: {_describe(e)}", fix) from e


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
