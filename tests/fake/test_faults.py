"""Faults on purpose: the plan's text form, its choices by index, path and seeded draw, and each fault on the wire."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import ConfigurationError
from flowmailer.testing import FakeFlowmailer, Fault, FaultKind, FaultPlan
from flowmailer.testing._fake._faults import FaultInjector
from tests.fake.raw import RawClient, message, request_bytes

SUBMIT = "/10001/messages/submit"

faults = st.builds(
    lambda kind, code, retry_after, seconds, path, at, p: Fault(
        kind,
        code=code if kind is FaultKind.STATUS else None,
        retry_after=retry_after if kind is FaultKind.STATUS else None,
        seconds=seconds if kind is FaultKind.DELAY else 0.0,
        path=path,
        at=at,
        probability=p,
    ),
    st.sampled_from(FaultKind),
    st.integers(400, 599),
    st.none() | st.integers(0, 3600),
    st.floats(0, 3600, allow_nan=False),
    st.none() | st.from_regex(r"[a-z_/*]{1,20}", fullmatch=True),
    st.none() | st.frozensets(st.integers(0, 1000), min_size=1, max_size=5),
    st.floats(0, 1),
)


@given(faults)
def test_text_form_round_trips(fault: Fault) -> None:
    assert Fault.parse(str(fault)) == fault


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("teapot", "fault"),
        ("503:p=2", "fault.probability"),
        ("503:colour=red", "fault"),
        ("200", "fault.code"),
        ("delay=-1", "fault.seconds"),
        ("accept-then-reset:retry-after=2", "fault.code"),
    ],
)
def test_bad_text_names_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Fault.parse(text)
    assert caught.value.field == field


def test_plan_parses_several_rules_with_a_seed() -> None:
    plan = FaultPlan.parse(["503:p=0.1:path=submit", "accept-then-reset:p=0.02"], seed=7)
    assert plan == FaultPlan(
        (Fault.status(503, probability=0.1, path="submit"), Fault.accept_then_reset(probability=0.02)), 7
    )


def test_index_counts_only_requests_on_the_rule_path() -> None:
    injector = FaultInjector(FaultPlan([Fault.status(500, path="submit", at=[1])]))
    picks = [
        injector.pick(p) for p in ("/1/messages/submit", "/oauth/token", "/1/messages/submit", "/1/messages/submit")
    ]
    assert [f is not None for f in picks] == [False, False, True, False]


def test_first_firing_rule_wins() -> None:
    first, second = Fault.status(502, at=[0]), Fault.status(503)
    injector = FaultInjector(FaultPlan([first, second]))
    assert [injector.pick("/x") for _ in range(2)] == [first, second]


def test_seeded_probability_is_reproducible() -> None:
    plan = FaultPlan([Fault.status(503, probability=0.1)], seed=1)
    injectors = [FaultInjector(plan), FaultInjector(plan)]
    runs = [[i.pick("/x") is not None for _ in range(1000)] for i in injectors]
    assert runs[0] == runs[1]
    assert 50 < sum(runs[0]) < 150


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer().running() as running:
        yield running


def _auth(fake: FakeFlowmailer) -> dict[str, str]:
    with RawClient(fake) as client:
        return client.bearer(fake.credential())


@pytest.mark.parametrize("status", [500, 502, 503])
def test_status_fault_answers_that_status_and_accepts_nothing(fake: FakeFlowmailer, status: int) -> None:
    auth = _auth(fake)
    fake.set_faults([Fault.status(status, path="submit", at=[0])])
    with RawClient(fake) as client:
        assert client.request("POST", SUBMIT, headers=auth, body=message()).status == status
        assert client.request("POST", SUBMIT, headers=auth, body=message()).status == 201
    assert len(fake.records().accepted) == 1
    assert fake.records().faults == {"status": 1}


@pytest.mark.parametrize("status", [429, 503])
def test_status_fault_carries_retry_after(fake: FakeFlowmailer, status: int) -> None:
    auth = _auth(fake)
    fake.set_faults(FaultPlan.parse([f"{status}:retry-after=7"]))
    with RawClient(fake) as client:
        answer = client.request("POST", SUBMIT, headers=auth, body=message())
    assert (answer.status, answer.headers["retry-after"]) == (status, "7")


def test_delay_fault_withholds_the_answer_and_stop_releases_it() -> None:
    fake = FakeFlowmailer(faults=[Fault.delay(3600, path="submit")])
    baseline = threading.active_count()
    with fake.running():
        auth = _auth(fake)
        with RawClient(fake, timeout=0.2) as client:
            client.send(request_bytes("POST", SUBMIT, headers=auth, body=message()))
            with pytest.raises(TimeoutError):
                client.read_response()
            assert fake.records().faults == {"delay": 1}
    assert threading.active_count() == baseline
    assert fake.records().accepted == ()


def test_short_delay_fault_then_answers_normally(fake: FakeFlowmailer) -> None:
    auth = _auth(fake)
    fake.set_faults([Fault.delay(0.01)])
    with RawClient(fake) as client:
        assert client.request("POST", SUBMIT, headers=auth, body=message()).status == 201


def test_close_before_read_hangs_up_without_acting(fake: FakeFlowmailer) -> None:
    auth = _auth(fake)
    fake.set_faults([Fault.close_before_read(path="submit")])
    with RawClient(fake) as client:
        client.send(request_bytes("POST", SUBMIT, headers=auth, body=message()))
        with pytest.raises(ConnectionError, match="without answering"):
            client.read_response()
    assert fake.records().accepted == ()


def test_accept_then_reset_accepts_the_message_and_resets(fake: FakeFlowmailer) -> None:
    auth = _auth(fake)
    fake.set_faults([Fault.accept_then_reset(path="submit")])
    with RawClient(fake) as client:
        client.send(request_bytes("POST", SUBMIT, headers=auth, body=message(tags=["ref:1"])))
        with pytest.raises(ConnectionResetError):
            client.read_response()
    records = fake.records()
    assert records.copies_by_reference == {"ref:1": 1}
    assert records.faults == {"accept-then-reset": 1}


def test_expire_token_fault_answers_invalid_token_for_good(fake: FakeFlowmailer) -> None:
    auth = _auth(fake)
    fake.set_faults([Fault.expire_token(at=[0])])
    with RawClient(fake) as client:
        first = client.request("POST", SUBMIT, headers=auth, body=message())
        second = client.request("POST", SUBMIT, headers=auth, body=message())
        assert client.request("POST", SUBMIT, headers=client.bearer(fake.credential()), body=message()).status == 201
    assert (first.status, first.json()["error"]) == (401, "invalid_token")
    assert second.status == 401


def test_seeded_faults_give_the_same_statuses_on_every_run() -> None:
    def statuses() -> list[int]:
        plan = FaultPlan([Fault.status(503, probability=0.1, path="submit")], seed=3)
        with FakeFlowmailer(faults=plan).running() as fake, RawClient(fake) as client:
            auth = client.bearer(fake.credential())
            return [client.request("POST", SUBMIT, headers=auth, body=message()).status for _ in range(60)]

    first = statuses()
    assert first == statuses()
    assert 503 in first
    assert 201 in first


def test_none_means_no_faults_at_construction_and_when_replacing_the_plan() -> None:
    with FakeFlowmailer(faults=None).running() as fake:
        auth = _auth(fake)
        with RawClient(fake) as client:
            assert client.request("POST", SUBMIT, headers=auth, body=message()).status == 201
            fake.set_faults([Fault.status(503)])
            assert client.request("POST", SUBMIT, headers=auth, body=message()).status == 503
            fake.set_faults(None)
            assert client.request("POST", SUBMIT, headers=auth, body=message()).status == 201
        assert fake.records().faults == {"status": 1}


@pytest.mark.parametrize(("faults", "field"), [("503", "faults"), ([Fault.status(503), "503"], "faults[1]")])
def test_faults_that_are_not_fault_values_are_refused_naming_the_position(faults: object, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        FakeFlowmailer(faults=faults)  # type: ignore[arg-type]
    assert info.value.field == field
    assert "FaultPlan.parse" in info.value.fix
