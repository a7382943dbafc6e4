"""``flowmailer relay`` as a subprocess against FakeFlowmailer: it drains the outbox and stops gracefully on signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trustme

from flowmailer.adapters.sqlite_connection_slots import SQLiteConnectionSlots
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.app import Client
from flowmailer.cli._config import load_config
from flowmailer.cli._wiring import build_clients
from flowmailer.core import SlotHolding, SubmissionState, SubmitMessage
from flowmailer.testing import API_HOST, SUBMIT_ROLE, FakeFlowmailer, Fault
from flowmailer.testing._fake import Credential

SUBMIT = "messages/submit"
#: The threaded relay (the default), and the async relay pipelining 4 per connection.
RELAYS = pytest.mark.parametrize("relay_flags", [(), ("--pipeline-depth", "4")], ids=["threaded", "pipelined"])


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    # The command resolves names with the system resolver: "localhost" is the fake's one name that resolves.
    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as fake:
        yield fake


def fill_outbox(path: Path, count: int) -> None:
    outbox = SQLiteOutbox(path)
    outbox.enqueue_many(
        SubmitMessage(sender_address="shop@example.com", recipient_address=f"c{i}@example.com", text="hi")
        for i in range(count)
    )
    outbox.close()


def start_relay(
    fake: FakeFlowmailer,
    tmp_path: Path,
    *,
    role: str = "ADMIN",
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    """The relay, configured by a TOML file and the secret from the environment."""
    command = [sys.executable, "-m", "flowmailer.cli", "relay", "--interval", "0.5", *extra]
    environment = {**relay_env(fake, tmp_path, role), **(env or {})}
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def relay_env(fake: FakeFlowmailer, tmp_path: Path, role: str = "ADMIN") -> dict[str, str]:
    """The environment of a relay configured by a TOML file (written here) and the secret."""
    credential = fake.credential(role)
    url = f"https://localhost:{fake.port}"
    (tmp_path / "flowmailer.toml").write_text(
        f'account_id = "{fake.account_id}"\nclient_id = "{credential.client_id}"\n'
        f'api_url = "{url}"\nlogin_url = "{url}"\nca_bundle = "{fake.ca_bundle}"\noutbox = "sqlite:outbox.db"\n',
        encoding="utf-8",
    )
    return {
        **os.environ,
        "FLOWMAILER_CONFIG": str(tmp_path / "flowmailer.toml"),
        "FLOWMAILER_CLIENT_SECRET": credential.client_secret,
    }


def counts(path: Path) -> dict[SubmissionState, int]:
    outbox = SQLiteOutbox(path)
    try:
        return outbox.counts()
    finally:
        outbox.close()


@RELAYS
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_relay_drains_the_outbox_and_exits_0_on_a_signal(
    fake: FakeFlowmailer, tmp_path: Path, signum: signal.Signals, relay_flags: tuple[str, ...]
) -> None:
    fill_outbox(tmp_path / "outbox.db", 40)
    relay = start_relay(fake, tmp_path, extra=relay_flags)
    try:
        fake.wait_until(lambda r: len(r.accepted) == 40, timeout=30)
    finally:
        relay.send_signal(signum)
        out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    assert counts(tmp_path / "outbox.db")[SubmissionState.ACCEPTED] == 40
    assert "relay stopped" in out
    assert fake.credential().client_secret not in out + err


@RELAYS
def test_relay_stopped_mid_run_leaves_nothing_in_flight_and_records_every_acceptance(
    fake: FakeFlowmailer, tmp_path: Path, relay_flags: tuple[str, ...]
) -> None:
    fake.set_faults([Fault.delay(0.05, path=SUBMIT)])
    fill_outbox(tmp_path / "outbox.db", 500)
    relay = start_relay(fake, tmp_path, extra=relay_flags)
    try:
        fake.wait_until(lambda r: len(r.accepted) >= 20, timeout=30)
    finally:
        relay.send_signal(signal.SIGTERM)
        _, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    after = counts(tmp_path / "outbox.db")
    records = fake.records()
    assert after[SubmissionState.IN_FLIGHT] == 0
    assert after[SubmissionState.ACCEPTED] == len(records.copies_by_reference)
    assert after[SubmissionState.ACCEPTED] < 500
    assert records.duplicates == {}


@RELAYS
def test_relay_with_refused_credentials_exits_1_and_says_why(
    fake: FakeFlowmailer, tmp_path: Path, relay_flags: tuple[str, ...]
) -> None:
    fill_outbox(tmp_path / "outbox.db", 3)
    credential = fake.credential()
    url = f"https://localhost:{fake.port}"
    command = [
        sys.executable,
        "-m",
        "flowmailer.cli",
        "relay",
        "--no-progress",
        "--outbox",
        f"sqlite://{tmp_path}/outbox.db",
    ]
    command += ["--account-id", fake.account_id, "--client-id", credential.client_id, "--api-url", url]
    command += ["--login-url", url, "--ca-bundle", str(fake.ca_bundle), *relay_flags]
    env = {**os.environ, "FLOWMAILER_CLIENT_SECRET": "wrong-secret"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "refused the credentials" in done.stderr
    assert "wrong-secret" not in done.stdout + done.stderr
    assert counts(tmp_path / "outbox.db")[SubmissionState.ACCEPTED] == 0


def test_relay_submits_with_a_submit_only_credential_and_reconciles_with_a_second_one(
    fake: FakeFlowmailer, tmp_path: Path
) -> None:
    fill_outbox(tmp_path / "outbox.db", 5)
    reader = fake.credential()
    second = {
        "FLOWMAILER_RECONCILE_CLIENT_ID": reader.client_id,
        "FLOWMAILER_RECONCILE_CLIENT_SECRET": reader.client_secret,
    }
    relay = start_relay(fake, tmp_path, role=SUBMIT_ROLE, env=second)
    try:
        fake.wait_until(lambda r: len(r.accepted) == 5, timeout=30)
    finally:
        relay.send_signal(signal.SIGTERM)
        out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    assert f"reconciling with client id {reader.client_id}" in out
    assert "cannot be reconciled" not in err
    assert reader.client_secret not in out + err


def test_relay_with_only_a_submit_only_credential_warns_at_start_naming_the_fix(
    fake: FakeFlowmailer, tmp_path: Path
) -> None:
    fill_outbox(tmp_path / "outbox.db", 2)
    relay = start_relay(fake, tmp_path, role=SUBMIT_ROLE)
    try:
        fake.wait_until(lambda r: len(r.accepted) == 2, timeout=30)
    finally:
        relay.send_signal(signal.SIGTERM)
        out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    assert "cannot be reconciled" in err
    assert "FLOWMAILER_RECONCILE_CLIENT_ID" in err
    assert "reconciliation REFUSED: ambiguous submissions go dead" in out


def relay_clients(fake: FakeFlowmailer, submitter: Credential, reader: Credential) -> tuple[Client, Client]:
    """The relay command's two clients, as its flags and environment would build them against ``fake``."""
    url = f"https://{API_HOST}:{fake.port}"
    flags = {"account_id": fake.account_id, "client_id": submitter.client_id, "api_url": url, "login_url": url}
    flags |= {"ca_bundle": str(fake.ca_bundle), "resolve": f"{API_HOST}=127.0.0.1"}
    flags |= {"reconcile_client_id": reader.client_id}
    environ = {"FLOWMAILER_CLIENT_SECRET": submitter.client_secret}
    environ |= {"FLOWMAILER_RECONCILE_CLIENT_SECRET": reader.client_secret}
    client, reconciler = build_clients(load_config(flags, environ))
    assert reconciler is not None
    return client, reconciler


def test_the_relays_two_clients_share_one_transport_so_at_most_10_connections_are_open(fake: FakeFlowmailer) -> None:
    fake.set_faults([Fault.delay(0.2)])  # every request holds its connection a while, so both clients want many
    client, reconciler = relay_clients(fake, fake.credential(SUBMIT_ROLE), fake.credential())
    message = SubmitMessage(sender_address="shop@example.com", recipient_address="c@example.com", text="hi")
    try:
        with ThreadPoolExecutor(max_workers=30) as pool:
            submits = [pool.submit(client.submit, message) for _ in range(15)]
            searches = [pool.submit(lambda: list(reconciler.messages_by_tag("ref:x"))) for _ in range(15)]
            assert all(submit.result() for submit in submits)
            assert [search.result() for search in searches] == [[]] * len(searches)
    finally:
        client.close()
        reconciler.close()
    assert fake.records().max_open_connections <= 10


def test_the_relays_two_clients_share_one_token_store_so_a_credential_is_refreshed_once(fake: FakeFlowmailer) -> None:
    """The same credential configured to submit and to reconcile: one token for the process, not one per client,
    so a refresh (and a failed refresh's back-off) is single flight for the whole relay."""
    credential = fake.credential()
    client, reconciler = relay_clients(fake, credential, credential)
    message = SubmitMessage(sender_address="shop@example.com", recipient_address="c@example.com", text="hi")
    try:
        assert client.submit(message)
        assert list(reconciler.messages_by_tag("ref:x")) == []
    finally:
        client.close()
        reconciler.close()
    assert fake.records().token_requests == {credential.client_id: 1}


def test_relay_with_a_wrong_ca_bundle_exits_2_at_start_naming_the_setting(fake: FakeFlowmailer, tmp_path: Path) -> None:
    fill_outbox(tmp_path / "outbox.db", 3)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    relay = start_relay(fake, tmp_path, env={"FLOWMAILER_CA_BUNDLE": str(other)})
    _, err = relay.communicate(timeout=60)  # before: it retried for ever, showing only NotSent
    assert relay.returncode == 2, err
    assert "ca_bundle: the certificate of localhost did not verify" in err
    assert "--ca-bundle" in err
    assert counts(tmp_path / "outbox.db")[SubmissionState.QUEUED] == 3
    assert fake.records().requests == 0


@RELAYS
def test_relay_once_drains_the_outbox_and_exits_0_by_itself(
    fake: FakeFlowmailer, tmp_path: Path, relay_flags: tuple[str, ...]
) -> None:
    fill_outbox(tmp_path / "outbox.db", 25)
    relay = start_relay(fake, tmp_path, extra=("--once", *relay_flags))
    out, err = relay.communicate(timeout=60)  # no signal: before, the flag did not exist (exit 2)
    assert relay.returncode == 0, err
    assert counts(tmp_path / "outbox.db")[SubmissionState.ACCEPTED] == 25
    assert "relay stopped" in out


@RELAYS
def test_relay_shares_the_credentials_ten_connections_with_the_relays_on_its_outbox(
    fake: FakeFlowmailer, tmp_path: Path, relay_flags: tuple[str, ...]
) -> None:
    """Another relay on the file holds 7 of the credential's slots: this one opens at most the other 3 (pipelined,
    each carrying up to 4 requests)."""
    fill_outbox(tmp_path / "outbox.db", 60)
    client_id = fake.credential("ADMIN").client_id
    rival = SQLiteConnectionSlots(tmp_path / "outbox.db")
    try:
        assert rival.acquire(client_id, "another-relay", 7, 3600.0).held == 7
        relay = start_relay(fake, tmp_path, extra=("--once", *relay_flags))
        out, err = relay.communicate(timeout=60)
        assert relay.returncode == 0, err
        assert 1 <= fake.records().max_open_connections <= 3
        assert "sharing the 10 connections of client id" in out
        assert "connection slots 0 of 10" in out.splitlines()[-1]  # stopped: given back
        assert counts(tmp_path / "outbox.db")[SubmissionState.ACCEPTED] == 60
        assert rival.renew(client_id, "another-relay", 3600.0) == SlotHolding(7, 1)  # the relay gave its 3 back
    finally:
        rival.close()


def test_a_slot_lease_too_short_to_cover_a_request_is_refused_naming_the_flag(
    fake: FakeFlowmailer, tmp_path: Path
) -> None:
    relay = start_relay(fake, tmp_path, extra=("--slot-lease", "30"))
    _, err = relay.communicate(timeout=60)
    assert relay.returncode == 2
    assert "--slot-lease" in err
    assert fake.records().requests == 0


#: ``flowmailer relay`` as an application that set up OpenTelemetry's SDK before running it (as
#: ``opentelemetry-instrument`` does): spans go to a JSON-lines file, the metrics' sums are written at exit.
_WITH_SDK = """
import json, os, sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

class ToFile(SpanExporter):
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
    def export(self, spans):
        for span in spans:
            parent = None if span.parent is None else span.parent.span_id
            record = {"name": span.name, "id": span.context.span_id, "parent": parent}
            self.file.write(json.dumps({**record, "attributes": dict(span.attributes or {})}) + "\\n")
        self.file.flush()
        return SpanExportResult.SUCCESS

spans, sums = sys.argv[1], sys.argv[2]
tracing = TracerProvider()
tracing.add_span_processor(SimpleSpanProcessor(ToFile(spans)))
trace.set_tracer_provider(tracing)
reader = InMemoryMetricReader()
if "TRACES_ONLY" not in os.environ:
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
from flowmailer.cli._main import main
code = main(sys.argv[3:])
totals = {}
data = None if "TRACES_ONLY" in os.environ else reader.get_metrics_data()
for resource in data.resource_metrics if data is not None else ():
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            if hasattr(metric.data, "is_monotonic"):
                totals[metric.name] = sum(point.value for point in metric.data.data_points)
with open(sums, "w", encoding="utf-8") as file:
    json.dump(totals, file)
sys.exit(code)
"""


@RELAYS
def test_relay_with_otel_records_each_claims_span_its_posts_and_the_counts(
    fake: FakeFlowmailer, tmp_path: Path, relay_flags: tuple[str, ...]
) -> None:
    fill_outbox(tmp_path / "outbox.db", 12)
    spans, sums = tmp_path / "spans.jsonl", tmp_path / "sums.json"
    command = [
        *(sys.executable, "-c", _WITH_SDK, str(spans), str(sums)),
        *("relay", "--once", "--otel", "--metrics-addr", "127.0.0.1:0", *relay_flags),
    ]  # both observers at once: OpenTelemetry's and Prometheus's
    env = relay_env(fake, tmp_path)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "no OpenTelemetry SDK" not in done.stderr  # one is set up: no warning
    assert "could not be read" not in done.stderr  # the last collection, at exit, finds the outbox forgotten
    assert "metrics: http://127.0.0.1:" in done.stdout
    records = [json.loads(line) for line in spans.read_text(encoding="utf-8").splitlines()]
    claims = [r for r in records if r["name"] == "flowmailer submit"]
    assert len(claims) == 12
    assert {r["attributes"]["flowmailer.decision"] for r in claims} == {"accepted"}
    posts = [r for r in records if r["name"] == "POST" and r["attributes"].get("flowmailer.operation") == "submit"]
    assert {r["parent"] for r in posts} == {r["id"] for r in claims}  # each submit inside its claim's span
    assert all(r["attributes"]["http.response.status_code"] == 201 for r in posts)
    assert json.loads(sums.read_text(encoding="utf-8"))["flowmailer.submits.accepted"] == 12
    assert counts(tmp_path / "outbox.db")[SubmissionState.ACCEPTED] == 12


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_relay_with_otel_and_no_sdk_runs_and_warns_that_nothing_is_exported(
    fake: FakeFlowmailer, tmp_path: Path, log_format: str
) -> None:
    fill_outbox(tmp_path / "outbox.db", 3)
    command = [sys.executable, "-m", "flowmailer.cli", "--log-format", log_format, "relay", "--once", "--otel"]
    done = subprocess.run(command, env=relay_env(fake, tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = "--otel: no OpenTelemetry SDK is set up in this process for spans or metrics, so none is exported"
    if log_format == "json":  # a log record like every other: one JSON object a line
        records = [json.loads(line) for line in done.stderr.splitlines()]
        [warning] = [r for r in records if r["message"].startswith("--otel")]
        assert warning["level"] == "warning"
        assert warning["message"].startswith(expected)
    else:
        assert expected in done.stderr
    assert "opentelemetry-instrument" in done.stderr
    assert counts(tmp_path / "outbox.db")[SubmissionState.ACCEPTED] == 3


def test_relay_with_otel_and_only_tracing_set_up_warns_that_metrics_are_not_exported(
    fake: FakeFlowmailer, tmp_path: Path
) -> None:
    fill_outbox(tmp_path / "outbox.db", 2)
    spans, sums = tmp_path / "spans.jsonl", tmp_path / "sums.json"
    command = [sys.executable, "-c", _WITH_SDK, str(spans), str(sums), "relay", "--once", "--otel"]
    env = {**relay_env(fake, tmp_path), "TRACES_ONLY": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "set up in this process for metrics, so none is exported" in done.stderr
    assert len(spans.read_text(encoding="utf-8").splitlines()) > 2  # the spans still are


@pytest.mark.parametrize(
    ("flag", "module", "extra"),
    [
        (("--otel",), "opentelemetry", "otel"),
        (("--metrics-addr", "127.0.0.1:0"), "prometheus_client", "prometheus"),
        (("--pipeline-depth", "4"), "anyio", "async"),
        (("--pipeline-depth", "4"), "h11", "async"),
    ],
)
def test_a_flag_whose_extra_is_not_installed_is_refused_at_start_naming_the_install(
    fake: FakeFlowmailer, tmp_path: Path, flag: tuple[str, ...], module: str, extra: str
) -> None:
    fill_outbox(tmp_path / "outbox.db", 2)
    without = f"import sys; sys.modules[{module!r}] = None; from flowmailer.cli._main import main; sys.exit(main())"
    command = [sys.executable, "-c", without, "relay", "--once", *flag]
    done = subprocess.run(command, env=relay_env(fake, tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert flag[0] in done.stderr
    assert f"pip install 'flowmailer[{extra}]'" in done.stderr
    assert counts(tmp_path / "outbox.db")[SubmissionState.QUEUED] == 2  # nothing was sent
    assert fake.records().accepted == ()
