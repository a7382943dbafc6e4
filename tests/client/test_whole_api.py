"""Every endpoint of Flowmailer's API, through both clients, against FakeFlowmailer over real TLS.

One walk, written once: it calls each client method by name through ``call``, which the sync client answers
directly and the async client from its event loop (the walk runs in a worker thread; on asyncio and on trio).
Writes are checked by the reads after them: a flow's rule decides where later messages go, a deleted filter is
gone from its recipient.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, assert_type

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app import Client
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import (
    ENDPOINTS,
    Account,
    AccountUser,
    AmbiguousError,
    ApiCredential,
    Attachment,
    DateRange,
    Disposition,
    EventFlow,
    EventFlowRuleSimple,
    Flow,
    FlowRuleSimple,
    Message,
    RejectedError,
    SenderDomain,
    Source,
    SubmitMessage,
    Template,
)
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeClock, FakeFlowmailer, Fault, StaticResolver

Call = Callable[..., Any]
BOUNCE = "bounce@example.test"


def _sync_client(fake: FakeFlowmailer) -> Client:
    return Client(
        fake.client_credentials(),
        api_url=fake.api_url,
        login_url=fake.login_url,
        transport=Urllib3Transport(ca_bundle=str(fake.ca_bundle), clock=FakeClock()),
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        clock=FakeClock(start=datetime.now(UTC).timestamp()),
        rng=random.Random(3),
    )


def _async_client(fake: FakeFlowmailer) -> AsyncClient:
    return AsyncClient(
        fake.client_credentials(),
        transport=AnyioTransport(ssl_context=fake.client_ssl_context()),
        token_store=AnyioTokenStore(),
        api_url=fake.api_url,
        login_url=fake.login_url,
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        rng=random.Random(3),
    )


def _message(**fields: Any) -> SubmitMessage:
    return SubmitMessage(sender_address="shop@example.test", recipient_address="ann@example.test", **fields)


def _today() -> DateRange:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return DateRange(midnight, midnight + timedelta(days=1))


def walk(call: Call) -> set[str]:
    """Every endpoint once or more; the names of the client methods it called."""
    called: set[str] = set()

    def do(name: str, *args: Any, **kwargs: Any) -> Any:
        called.add(name)
        return call(name, *args, **kwargs)

    def refused(name: str, *args: Any) -> int:
        try:
            do(name, *args)
        except RejectedError as e:
            return e.status
        raise AssertionError(f"{name}{args} was not refused")

    assert do("check_credentials") > 0
    # Flows: a new flow takes the messages its rule's selector names.
    flow_id = do("create_flow", Flow(description="Invoices", template_id="1"))
    do("update_flow_rule", flow_id, FlowRuleSimple(flow_selector="invoice"))
    assert do("flow_rule", flow_id).flow_selector == "invoice"
    logo = Attachment(b"\x89PNG", "image/png", "logo.png", Disposition.RELATED, "logo")
    invoice = do("submit", _message(flow_selector="invoice", html='<img src="cid:logo">', attachments=[logo]))
    bounced = do("submit", SubmitMessage(sender_address="shop@example.test", recipient_address=BOUNCE, text="x"))
    later = datetime.now(UTC) + timedelta(days=1)
    held = do("submit", _message(text="tomorrow", schedule_at=later, tags=["later"]))
    assert [m.id for m in do("flow_messages", flow_id)] == [invoice]
    assert {f.id for f in do("flows")} >= {"1", flow_id}
    assert do("update_flow", flow_id, Flow(description="Invoices (EU)", template_id="1")).description == "Invoices (EU)"
    assert do("flow", flow_id).description == "Invoices (EU)"
    assert any(r.flow and r.flow.id == flow_id for r in do("flow_rules"))
    assert do("flow_stats", flow_id, _today()).totals()["processed"] == 1
    assert do("flow_templates")
    # Messages.
    assert do("message", invoice).flow.id == flow_id
    assert {m.id for m in do("messages")} >= {invoice, bounced, held}
    assert [m.id for m in do("messages_by_tag", "later")] == [held]
    assert any(e.message_id == bounced for page in do("message_events") for e in page.items)
    assert do("message_stats", _today(), interval=86400).totals()["processed"] >= 3
    (archive,) = do("message_archive", invoice, add_attachments=True)
    assert archive.attachments[0].content == b"\x89PNG"
    assert do("message_archive_attachment", invoice, archive.flow_step_id, "logo").filename == "logo.png"
    assert do("message_error_archive", bounced).flow_step_id == "error"
    assert refused("message_error_archive", invoice) == 404
    assert [h.message_id for h in do("message_holds")] == [held]
    assert do("message_hold", held).reason == "scheduled"
    do("resend_message", invoice, recipient_address="bob@example.test")
    assert len(do("recipient_messages", "bob@example.test")) == 1
    assert {m.id for m in do("sender_messages", "shop@example.test")} >= {invoice, bounced}
    assert [m.id for m in do("undelivered_messages")] == [bounced]
    assert do("simulate", _message(text="preview"), "1").text == "preview"
    # Filters: the bounce filtered its recipient; deleting the filter sends to it again.
    (bounce_filter,) = do("filters")
    assert do("recipient", BOUNCE).filters == (bounce_filter,)
    do("delete_filter", bounce_filter.id)
    assert do("recipient", BOUNCE).filters == ()
    assert do("filters") == []
    do("delete_flow", flow_id)
    assert refused("flow", flow_id) == 404
    # Sources and their users.
    source_id = do("create_source", Source(description="Shop", type="API"))
    assert do("update_source", source_id, Source(description="Webshop", type="API")).description == "Webshop"
    assert do("source", source_id).description == "Webshop"
    assert {s.id for s in do("sources", statistics=True)} >= {"1", source_id}
    assert {m.id for m in do("source_messages", "1")} >= {invoice, bounced}
    assert do("source_stats", "1", _today()).totals()["processed"] >= 3
    user_id = do("create_source_user", "1", ApiCredential(protocol="SMTP", username="relay-2"))
    assert do("update_source_user", "1", user_id, ApiCredential(protocol="SMTP", username="relay-3")).username
    assert do("source_user", "1", user_id).username == "relay-3"
    assert user_id in {u.id for u in do("source_users", "1")}
    do("delete_source_user", "1", user_id)
    do("delete_source", source_id)
    assert refused("source", source_id) == 404
    # Templates.
    template_id = do("create_template", Template(description="T", mime_type="text/html", template_engine="none"))
    assert do("update_template", template_id, Template(description="U", mime_type="text/html", template_engine="none"))
    assert do("template", template_id).description == "U"
    assert template_id in {t.id for t in do("templates")}
    do("delete_template", template_id)
    assert refused("template", template_id) == 404
    assert refused("create_template", Template(description="no engine")) == 400
    # Event flows and their rules.
    event_flow_id = do("create_event_flow", EventFlow(description="Clicks"))
    do("update_event_flow_rule", event_flow_id, EventFlowRuleSimple(event_type="OPENED"))
    assert do("event_flow_rule", event_flow_id).event_type == "OPENED"
    assert do("update_event_flow", event_flow_id, EventFlow(description="Opens")).description == "Opens"
    assert do("event_flow", event_flow_id).description == "Opens"
    assert event_flow_id in {f.id for f in do("event_flows")}
    assert any(r.event_flow_id == event_flow_id for r in do("event_flow_rules"))
    assert any(h.flow and h.flow.id == event_flow_id for h in do("event_flow_rules_hierarchy"))
    do("delete_event_flow", event_flow_id)
    # Sender domains, with their DNS records.
    domain_id = do("create_sender_domain", SenderDomain(sender_domain="shop.test"))
    assert do("sender_domain", domain_id, validate=True).dns_records
    assert do("sender_domain_by_domain", "shop.test").id == domain_id
    assert do("validate_sender_domain", SenderDomain(sender_domain="other.test")).dns_records[0].status == "OK"
    updated = do("update_sender_domain", domain_id, SenderDomain(sender_domain="shop.test", web_domain="w.shop.test"))
    assert updated.web_domain == "w.shop.test"
    assert domain_id in {d.id for d in do("sender_domains")}
    do("delete_sender_domain", domain_id)
    # Credentials, roles, users, accounts.
    assert {r.name for r in do("roles")} >= {"ADMIN", "FEATURE_SUBMITMESSAGE"}
    credential_id = do("create_api_credential", ApiCredential(protocol="API", description="reports"))
    assert do("update_api_credential", credential_id, ApiCredential(protocol="API", description="stats")).description
    assert do("api_credential", credential_id).description == "stats"
    assert credential_id in {c.id for c in do("api_credentials")}
    assert do("api_credentials", source_id="1")
    do("delete_api_credential", credential_id)
    assert do("add_user", AccountUser(username="ops@example.test", roles=("ADMIN",))) == "ops@example.test"
    assert "ops@example.test" in {u.username for u in do("users")}
    assert do("create_account", Account(type="CUSTOMER", description="Shop BV"))
    return called


def _served() -> set[str]:
    return {e.served_by or e.name for e in ENDPOINTS}


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer(bounce_recipients=[BOUNCE]).running() as running:
        yield running


def _materialised(result: Any) -> Any:
    return list(result) if isinstance(result, Iterator) else result


def test_every_endpoint_through_the_sync_client(fake: FakeFlowmailer) -> None:
    with _sync_client(fake) as client:
        called = walk(lambda name, *a, **k: _materialised(getattr(client, name)(*a, **k)))
    assert called == _served()
    assert len(ENDPOINTS) == 73


@pytest.mark.anyio
async def test_every_endpoint_through_the_async_client() -> None:
    fake = FakeFlowmailer(bounce_recipients=[BOUNCE])
    async with fake.serving(), _async_client(fake) as client:

        async def one(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            result = getattr(client, name)(*args, **kwargs)
            if isinstance(result, AsyncIterator):
                return [item async for item in result]
            return await result

        def call(name: str, *args: Any, **kwargs: Any) -> Any:
            return anyio.from_thread.run(one, name, args, kwargs)

        called = await anyio.to_thread.run_sync(walk, call)
    assert called == _served()


def test_a_create_whose_answer_is_lost_is_ambiguous_not_sent_again(fake: FakeFlowmailer) -> None:
    """A POST that creates is classified like a submit: no answer after the request was written is Ambiguous, and
    it is not sent again (a second flow would be a duplicate); a PUT in the same spot is sent again."""
    with _sync_client(fake) as client:
        client.check_credentials()
        fake.set_faults([Fault.accept_then_reset(path="*/flows", at=[0])])
        with pytest.raises(AmbiguousError):
            client.create_flow(Flow(description="once", template_id="1"))
        created = [f for f in client.flows() if f.description == "once"]
        assert len(created) == 1  # Flowmailer did it, once
        fake.set_faults([Fault.accept_then_reset(path="*/flows/*", at=[0])])
        assert client.update_flow(created[0].id or "", Flow(description="twice", template_id="1")).description


def test_the_methods_are_typed_per_client() -> None:
    """mypy checks these: one method, two shapes."""

    def sync_side(client: Client) -> None:
        assert_type(client.flow("1"), Flow)
        assert_type(client.flow_messages("1"), Iterator[Message])

    async def async_side(client: AsyncClient) -> None:
        assert_type(await client.flow("1"), Flow)
        assert_type(client.flow_messages("1"), AsyncIterator[Message])

    assert callable(sync_side)
    assert callable(async_side)
