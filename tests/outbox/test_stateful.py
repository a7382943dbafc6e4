"""Every outbox behaves like a small in-memory model under any sequence of operations (Hypothesis stateful test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from flowmailer.adapters.postgres_outbox import PostgresOutbox
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import (
    Claim,
    ConfigurationError,
    LeaseLostError,
    LifecycleError,
    OutboxId,
    Settlement,
    SubmissionState,
    SubmitMessage,
)
from flowmailer.ports import Outbox
from flowmailer.testing import FakeClock, MemoryOutbox
from tests.outbox.postgres_server import PostgresServer

_S = SubmissionState
LEASE = 30.0
Factory = Callable[[FakeClock], Outbox]


@attrs.define
class Row:
    """What the model expects of one outbox row."""

    state: SubmissionState
    due_at: float | None
    key: str | None
    attempts: int = 0
    token: int = 0
    held: bool = False
    accepted_at: float | None = None
    #: Given up while reconciling: a requeue sends it to a search first.
    may_be_accepted: bool = False


def _message(n: int) -> SubmitMessage:
    return SubmitMessage(sender_address="s@example.com", recipient_address=f"r{n}@example.com", text=str(n))


class OutboxMachine(RuleBasedStateMachine):
    """Drives a real outbox and the model side by side; any difference fails with the shortest sequence found."""

    factory: Factory

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.outbox = self.factory(self.clock)
        self.rows: dict[OutboxId, Row] = {}
        self.keys: dict[str, OutboxId] = {}
        self.claims: list[Claim] = []
        self.sent = 0

    def teardown(self) -> None:
        self.outbox.close()

    def _holds(self, claim: Claim) -> bool:
        row = self.rows.get(claim.id)
        return row is not None and row.held and row.token == claim.token

    def _new_row(self, outbox_id: OutboxId, key: str | None) -> None:
        assert outbox_id not in self.rows
        self.rows[outbox_id] = Row(_S.QUEUED, self.clock.now(), key)
        if key is not None:
            self.keys[key] = outbox_id

    def _lease(self, claim: Claim, claimed_from: SubmissionState) -> None:
        row = self.rows[claim.id]
        assert claim.claimed_from is claimed_from
        row.state = _S.RECONCILING if claimed_from in (_S.IN_FLIGHT, _S.RECONCILING) else _S.IN_FLIGHT
        row.attempts += row.state is _S.IN_FLIGHT  # searches do not count
        row.token += 1
        row.held = True
        row.due_at = self.clock.now() + LEASE
        assert (claim.state, claim.attempts, claim.token) == (row.state, row.attempts, row.token)
        assert claim.lease_until == row.due_at
        self.claims.append(claim)

    @rule(key=st.none() | st.sampled_from(["k1", "k2", "k3"]))
    def enqueue(self, key: str | None) -> None:
        self.sent += 1
        outbox_id = self.outbox.enqueue(_message(self.sent), dedupe_key=key)
        if key in self.keys:
            assert outbox_id == self.keys[key]
        else:
            self._new_row(outbox_id, key)

    @rule(n=st.integers(0, 3))
    def enqueue_many(self, n: int) -> None:
        ids = self.outbox.enqueue_many([_message(self.sent + i) for i in range(n)])
        self.sent += n
        assert len(ids) == n
        for outbox_id in ids:
            self._new_row(outbox_id, None)

    @rule(owner=st.sampled_from(["a", "b"]), limit=st.integers(1, 4))
    def claim(self, owner: str, limit: int) -> None:
        now = self.clock.now()
        due = sorted((r.due_at, i) for i, r in self.rows.items() if r.due_at is not None and r.due_at <= now)
        claims = self.outbox.claim(owner, limit, LEASE)
        assert [c.id for c in claims] == [i for _, i in due[:limit]]
        for claim in claims:
            self._lease(claim, self.rows[claim.id].state)

    @rule(seconds=st.sampled_from([0.5, 1.0, 10.0, LEASE, LEASE + 1]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.claims))
    @rule(
        data=st.data(),
        action=st.sampled_from(["accepted", "retry", "reconcile", "dead", "release", "resend"]),
        delay=st.integers(0, 60),
    )
    def settle(self, data: st.DataObject, action: str, delay: int) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        at = self.clock.now() + delay
        if action == "resend" and not claim.must_reconcile:
            with pytest.raises(LifecycleError):
                self.outbox.resend(claim, LEASE)
            return
        if action == "resend":
            if not self._holds(claim):
                with pytest.raises(LeaseLostError):
                    self.outbox.resend(claim, LEASE)
                return
            again = self.outbox.resend(claim, LEASE)
            self._settled(claim, action, at)
            self._lease(again, _S.QUEUED)
            return
        build: dict[str, Callable[[], Settlement]] = {
            "accepted": lambda: Settlement.accepted(claim, "m-1"),
            "retry": lambda: Settlement.retry(claim, at, "retry"),
            "reconcile": lambda: Settlement.reconcile(claim, at, "reconcile"),
            "dead": lambda: Settlement.dead(claim, "dead"),
            "release": lambda: Settlement.release(claim),
        }
        lost = self.outbox.settle([build[action]()])
        assert lost == ([] if self._holds(claim) else [claim])
        if not lost:
            self._settled(claim, action, at)

    def _settled(self, claim: Claim, action: str, at: float) -> None:
        """The model's row once ``claim`` is settled by ``action`` (a resend's new lease is the caller's)."""
        now = self.clock.now()
        row = self.rows[claim.id]
        row.held = False
        if action == "accepted":
            row.state, row.due_at, row.accepted_at = _S.ACCEPTED, None, now
        elif action == "retry":
            row.state, row.due_at = (_S.RECONCILING if claim.must_reconcile else _S.RETRY_SCHEDULED), at
        elif action == "reconcile":
            row.state, row.due_at = _S.RECONCILING, at
        elif action == "dead":
            row.state, row.due_at, row.may_be_accepted = _S.DEAD, None, claim.must_reconcile
        elif action == "release":
            row.state, row.due_at = (_S.RECONCILING if claim.must_reconcile else _S.QUEUED), now
            row.attempts -= not claim.must_reconcile

    @precondition(lambda self: bool(self.claims))
    @rule(
        data=st.data(),
        actions=st.lists(
            st.sampled_from(["accepted", "retry", "reconcile", "dead", "release"]), min_size=1, max_size=5
        ),
        delay=st.integers(0, 60),
    )
    def settle_many(self, data: st.DataObject, actions: list[str], delay: int) -> None:
        """One group commit: the claims still held are recorded, the lost ones are answered and left alone."""
        chosen = data.draw(
            st.lists(
                st.sampled_from(self.claims), min_size=1, max_size=len(actions), unique_by=lambda c: (c.id, c.token)
            )
        )
        at = self.clock.now() + delay
        build = {
            "accepted": lambda c: Settlement.accepted(c, "m-1"),
            "retry": lambda c: Settlement.retry(c, at, "retry"),
            "reconcile": lambda c: Settlement.reconcile(c, at, "reconcile"),
            "dead": lambda c: Settlement.dead(c, "dead"),
            "release": Settlement.release,
        }
        pairs = list(zip(chosen, actions, strict=False))
        lost = self.outbox.settle([build[action](claim) for claim, action in pairs])
        assert lost == [claim for claim, _ in pairs if not self._holds(claim)]
        for claim, action in pairs:
            if self._holds(claim):
                self._settled(claim, action, at)

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.claims), max_size=4))
        held = {c.id for c in chosen if self._holds(c)}
        assert self.outbox.renew(chosen, LEASE) == held
        for outbox_id in held:
            self.rows[outbox_id].due_at = self.clock.now() + LEASE

    @rule(data=st.data(), everything=st.booleans())
    def requeue_dead(self, data: st.DataObject, everything: bool) -> None:
        if everything:
            ids = [i for i, r in self.rows.items() if r.state is _S.DEAD]
            assert self.outbox.requeue_dead() == len(ids)
        else:
            ids = data.draw(st.lists(st.sampled_from([*self.rows, 10**9]), max_size=3, unique=True))
            if any(i not in self.rows or self.rows[i].state is not _S.DEAD for i in ids):
                with pytest.raises(ConfigurationError):
                    self.outbox.requeue_dead(ids)
                return
            assert self.outbox.requeue_dead(ids) == len(ids)
        for i in ids:
            state = _S.RECONCILING if self.rows[i].may_be_accepted else _S.QUEUED
            self.rows[i] = attrs.evolve(self.rows[i], state=state, due_at=self.clock.now(), attempts=0)

    @rule(older_than=st.sampled_from([0.0, 5.0, 100.0]))
    def prune(self, older_than: float) -> None:
        cutoff = self.clock.now() - older_than
        gone = [i for i, r in self.rows.items() if r.accepted_at is not None and r.accepted_at <= cutoff]
        assert self.outbox.prune_accepted(older_than) == len(gone)
        for i in gone:
            key = self.rows.pop(i).key
            if key is not None:
                del self.keys[key]

    @precondition(lambda self: bool(self.rows))
    @rule(data=st.data())
    def status(self, data: st.DataObject) -> None:
        outbox_id = data.draw(st.sampled_from(sorted(self.rows)))
        row, status = self.rows[outbox_id], self.outbox.status(outbox_id)
        assert status is not None
        assert (status.state, status.due_at, status.attempts, status.dedupe_key) == (
            row.state,
            row.due_at,
            row.attempts,
            row.key,
        )

    @rule(limit=st.integers(1, 3), data=st.data())
    def dead_letters(self, limit: int, data: st.DataObject) -> None:
        dead = sorted(i for i, r in self.rows.items() if r.state is _S.DEAD)
        after = data.draw(st.none() | st.sampled_from([0, *dead]))
        page = self.outbox.dead_letters(limit, after)
        assert [s.id for s in page] == [i for i in dead if after is None or i > after][:limit]
        assert all(s.state is _S.DEAD for s in page)

    @invariant()
    def counts_match(self) -> None:
        expected = dict.fromkeys(SubmissionState, 0)
        for row in self.rows.values():
            expected[row.state] += 1
        assert self.outbox.counts() == expected


def _run(factory: Factory) -> None:
    machine = type("Machine", (OutboxMachine,), {"factory": staticmethod(factory)})
    run_state_machine_as_test(machine)


def test_memory_outbox_matches_the_model() -> None:
    _run(MemoryOutbox)


def test_sqlite_outbox_matches_the_model(tmp_path: Path) -> None:
    _run(lambda clock: SQLiteOutbox(tmp_path / f"{uuid.uuid4().hex}.db", clock=clock))


@pytest.mark.postgres
def test_postgres_outbox_matches_the_model(postgres_server: PostgresServer) -> None:
    def factory(clock: FakeClock) -> PostgresOutbox:
        outbox = PostgresOutbox(postgres_server.conninfo, table=f"s_{uuid.uuid4().hex}", clock=clock)
        outbox.create_schema()
        return outbox

    _run(factory)
