"""Faults the fake injects on purpose, chosen per request by index, by path or by a seeded draw."""

from __future__ import annotations

import enum
import fnmatch
import math
import random
import threading
from collections.abc import Iterable

import attrs

from flowmailer.core import ConfigurationError

__all__ = ["Fault", "FaultKind", "FaultPlan"]


class FaultKind(enum.Enum):
    #: Answer this status instead of handling the request (429 and 503 may carry Retry-After).
    STATUS = "status"
    #: Wait this long, then handle the request normally.
    DELAY = "delay"
    #: Close the connection without handling or answering the request: nothing happened at Flowmailer.
    CLOSE_BEFORE_READ = "close-before-read"
    #: Handle the request (a submit is accepted) and then reset the connection instead of answering.
    ACCEPT_THEN_RESET = "accept-then-reset"
    #: Expire the request's bearer token ahead of time, so it is answered 401 invalid_token.
    EXPIRE_TOKEN = "expire-token"  # noqa: S105 - a fault name, not a password


def _indices(at: Iterable[int] | None) -> frozenset[int] | None:
    return None if at is None else frozenset(at)


_FIX = 'write a fault as KIND[:option]..., e.g. "503:p=0.1:path=submit" or "429:retry-after=2:at=0,1"'


@attrs.frozen
class Fault:
    """One rule of a :class:`FaultPlan`; build it with the class methods, or :meth:`parse` its text form.

    A rule fires for a request when the request's path ends with the glob ``path`` (any path if None), the
    request's index among the requests this rule's path matched is in ``at`` (any index if None), and a
    draw from the plan's seeded random source falls below ``probability``.
    """

    kind: FaultKind
    code: int | None = None
    retry_after: int | None = None
    seconds: float = 0.0
    path: str | None = None
    at: frozenset[int] | None = attrs.field(default=None, converter=_indices)
    probability: float = 1.0

    def __attrs_post_init__(self) -> None:
        if self.kind is FaultKind.STATUS and (self.code is None or not 400 <= self.code <= 599):
            raise ConfigurationError("fault.code", f"{self.code!r} is not an error status", "use 400 to 599")
        if self.kind is not FaultKind.STATUS and (self.code is not None or self.retry_after is not None):
            raise ConfigurationError("fault.code", "only a status fault has a code or Retry-After", "drop it")
        if not (0.0 <= self.probability <= 1.0):
            raise ConfigurationError("fault.probability", f"{self.probability!r} is not in [0, 1]", "use 0 to 1")
        if not math.isfinite(self.seconds) or self.seconds < 0:
            raise ConfigurationError("fault.seconds", f"{self.seconds!r} is not a duration", "use seconds >= 0")
        if self.retry_after is not None and self.retry_after < 0:
            raise ConfigurationError("fault.retry_after", f"{self.retry_after!r} is negative", "use whole seconds >= 0")
        if self.at is not None and any(i < 0 for i in self.at):
            raise ConfigurationError("fault.at", "a request index is negative", "count requests from 0")

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: int | None = None,
        path: str | None = None,
        at: Iterable[int] | None = None,
        probability: float = 1.0,
    ) -> Fault:
        return cls(FaultKind.STATUS, code, retry_after, path=path, at=at, probability=probability)

    @classmethod
    def delay(
        cls, seconds: float, *, path: str | None = None, at: Iterable[int] | None = None, probability: float = 1.0
    ) -> Fault:
        return cls(FaultKind.DELAY, seconds=seconds, path=path, at=at, probability=probability)

    @classmethod
    def close_before_read(
        cls, *, path: str | None = None, at: Iterable[int] | None = None, probability: float = 1.0
    ) -> Fault:
        return cls(FaultKind.CLOSE_BEFORE_READ, path=path, at=at, probability=probability)

    @classmethod
    def accept_then_reset(
        cls, *, path: str | None = None, at: Iterable[int] | None = None, probability: float = 1.0
    ) -> Fault:
        return cls(FaultKind.ACCEPT_THEN_RESET, path=path, at=at, probability=probability)

    @classmethod
    def expire_token(
        cls, *, path: str | None = None, at: Iterable[int] | None = None, probability: float = 1.0
    ) -> Fault:
        return cls(FaultKind.EXPIRE_TOKEN, path=path, at=at, probability=probability)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Read the command-line form: ``KIND[:p=P][:path=GLOB][:at=I,J][:retry-after=S]``.

        KIND is a status code, ``delay=SECONDS``, ``close-before-read``, ``accept-then-reset`` or ``expire-token``.
        """
        head, *options = text.strip().split(":")
        probability, path, at, retry_after = 1.0, None, None, None
        for option in options:
            key, sep, value = option.partition("=")
            try:
                if not sep:
                    raise ValueError
                if key == "p":
                    probability = float(value)
                elif key == "path":
                    path = value
                elif key == "at":
                    at = frozenset(int(i) for i in value.split(","))
                elif key == "retry-after":
                    retry_after = int(value)
                else:
                    raise ValueError
            except ValueError:
                raise ConfigurationError("fault", f"{option!r} in {text!r} is not an option", _FIX) from None
        code, seconds = None, 0.0
        try:
            if head.isdigit():
                kind, code = FaultKind.STATUS, int(head)
            elif head.startswith("delay="):
                kind, seconds = FaultKind.DELAY, float(head.removeprefix("delay="))
            else:
                kind = FaultKind(head)
        except ValueError:
            raise ConfigurationError("fault", f"{text!r} is not a fault", _FIX) from None
        return cls(kind, code, retry_after, seconds, path, at, probability)

    def __str__(self) -> str:
        if self.kind is FaultKind.STATUS:
            parts = [str(self.code)]
        elif self.kind is FaultKind.DELAY:
            parts = [f"delay={self.seconds!r}"]
        else:
            parts = [self.kind.value]
        if self.probability != 1.0:
            parts.append(f"p={self.probability!r}")
        if self.path is not None:
            parts.append(f"path={self.path}")
        if self.at is not None:
            parts.append("at=" + ",".join(str(i) for i in sorted(self.at)))
        if self.retry_after is not None:
            parts.append(f"retry-after={self.retry_after}")
        return ":".join(parts)

    def matches_path(self, path: str) -> bool:
        return self.path is None or fnmatch.fnmatchcase(path, "*" + self.path)


def _rules(rules: Iterable[Fault] | None) -> tuple[Fault, ...]:
    """None is no faults; a string would be read one character at a time, so it is refused with the fix."""
    fix = 'give Fault values, or their text form through FaultPlan.parse(["503:at=0"])'
    given: object = rules  # typed callers never pass text; untyped ones do
    if given is None:
        return ()
    if isinstance(given, str | bytes):
        raise ConfigurationError("faults", f"is the text {given!r}, not a list of Fault values", fix)
    checked = tuple(rules or ())
    for i, rule in enumerate(checked):
        if not isinstance(rule, Fault):
            raise ConfigurationError(f"faults[{i}]", f"{rule!r} is not a Fault", fix)
    return checked


def plan_of(faults: FaultPlan | Iterable[Fault] | None) -> FaultPlan:
    """What ``FakeFlowmailer(faults=...)`` and ``set_faults`` take: a plan, the rules alone, or None for none."""
    return faults if isinstance(faults, FaultPlan) else FaultPlan(_rules(faults))


@attrs.frozen
class FaultPlan:
    """The rules a fake applies, first firing rule wins; ``seed`` makes every probability reproducible."""

    rules: tuple[Fault, ...] = attrs.field(default=(), converter=_rules)
    seed: int = 0

    @classmethod
    def parse(cls, texts: Iterable[str], seed: int = 0) -> FaultPlan:
        return cls(tuple(Fault.parse(t) for t in texts), seed)


class FaultInjector:
    """A plan in motion: per-rule counts of matching requests and the seeded draws, shared by every connection."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._random = random.Random(plan.seed)
        self._seen = [0] * len(plan.rules)

    def pick(self, path: str) -> Fault | None:
        if not self.plan.rules:
            return None
        with self._lock:
            chosen = None
            for i, rule in enumerate(self.plan.rules):
                if not rule.matches_path(path):
                    continue
                index = self._seen[i]
                self._seen[i] += 1
                if chosen is not None or (rule.at is not None and index not in rule.at):
                    continue
                if rule.probability >= 1.0 or self._random.random() < rule.probability:
                    chosen = rule
            return chosen
