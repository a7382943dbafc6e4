"""Flowmailer's resources as frozen values, validated at construction."""

from __future__ import annotations

import attrs

__all__ = ["ErrorDetail"]


@attrs.frozen
class ErrorDetail:
    """One entry of Flowmailer's ``allErrors`` list."""

    code: str | None = None
    default_message: str | None = None
    field: str | None = None
    object_name: str | None = None
    rejected_value: object = None
    arguments: tuple[object, ...] = ()

    def describe(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{where}{self.default_message or self.code or 'error'}"
