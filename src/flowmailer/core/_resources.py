"""The rest of Flowmailer's resources, as its API answers them: every field optional, read tolerantly.

Each class mirrors one of Flowmailer's published models, field for field in snake_case; what a model does not
know, and any value of a kind its field cannot hold, is kept in ``extra`` (see ``flowmailer.core._wire``).
They are also the bodies of the writes (``create_flow``, ``update_source``, ...): Flowmailer checks those and
answers what it refuses with ``allErrors``, which the client raises as a ``RejectedError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from flowmailer.core._models import (
    ArchivedAttachment,
    ErrorDetail,
    EventType,
    Message,
    MessageHeader,
    MessageType,
    ObjectRef,
    _extra,
)
from flowmailer.core._reports import Sample

__all__ = [
    "Account",
    "AccountUser",
    "ApiCredential",
    "BouncedMessage",
    "DataExpression",
    "DnsRecord",
    "EventFlow",
    "EventFlowRuleSimple",
    "Filter",
    "Flow",
    "FlowCondition",
    "FlowRuleHierarchyItem",
    "FlowRuleItem",
    "FlowRuleSimple",
    "FlowStep",
    "FlowTemplate",
    "InboundRecipient",
    "MessageArchive",
    "MessageHold",
    "MessageReturn",
    "MessageSummary",
    "Recipient",
    "Role",
    "SenderDomain",
    "Source",
    "Template",
]


@attrs.frozen(kw_only=True)
class Account:
    """An account of a Flowmailer reseller (``POST accounts``)."""

    id: str | None = None
    type: str | None = None
    description: str | None = None
    locale: str | None = None
    time_region: str | None = None
    account_ends: datetime | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class AccountUser:
    """A user of the account and its roles (``users``)."""

    username: str | None = None
    roles: tuple[str, ...] = ()
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class ApiCredential:
    """An API or SMTP credential (``api_credentials``, ``sources/{id}/users``); ``client_secret`` only when created."""

    allowed_addresses: tuple[str, ...] = ()
    allowed_senders: tuple[str, ...] = ()
    auth_source: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    contact_info: str | None = None
    description: str | None = None
    id: str | None = None
    inbound_domain: str | None = None
    inbound_recipients: tuple[InboundRecipient, ...] = ()
    password: str | None = None
    protocol: str | None = None
    roles: object = attrs.field(default=None, hash=False)
    source_id: str | None = None
    username: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class InboundRecipient:
    """Where a source's inbound address forwards to."""

    destination_recipient: str | None = None
    inbound_address: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class DataExpression:
    """A condition on a message's data in a flow or event-flow rule."""

    expression: str | None = None
    value: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class DnsRecord:
    """One DNS record a sender domain needs, with what Flowmailer found when it last checked."""

    error_messages: tuple[str, ...] = ()
    name: str | None = None
    status: str | None = None
    type: str | None = None
    value: str | None = None
    warning_messages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class EventFlow:
    """An event flow: the steps run on events (``event_flows``)."""

    description: str | None = None
    id: str | None = None
    parent_id: str | None = None
    steps: tuple[FlowStep, ...] = ()
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class FlowStep:
    """One step of a flow; each kind's settings stay the JSON object Flowmailer sends (``set_header``, ...)."""

    add_attachment: dict[str, Any] | None = None
    aggregate: dict[str, Any] | None = None
    apply_to_link_domains: str | None = None
    archive: dict[str, Any] | None = None
    discard: dict[str, Any] | None = None
    divisor: int | None = None
    dns_lookup: dict[str, Any] | None = None
    enabled_expression: str | None = None
    error_on_not_found: bool | None = None
    external_content: dict[str, Any] | None = None
    external_data: dict[str, Any] | None = None
    extract_data: dict[str, Any] | None = None
    id: str | None = None
    ldap_search: dict[str, Any] | None = None
    mail_plus_api_credentials: dict[str, Any] | None = None
    overwrite_url_parameters: bool | None = None
    resubmit_message: dict[str, Any] | None = None
    rewrite_recipient: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    set_header: dict[str, Any] | None = None
    set_sender: dict[str, Any] | None = None
    subject_template: str | None = None
    template: ObjectRef | None = None
    to: str | None = None
    type: str | None = None
    url_parameters_template: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class EventFlowRuleSimple:
    """Which events an event flow handles (``event_flows/{id}/rule``)."""

    data_expressions: tuple[DataExpression, ...] = ()
    event_flow_id: str | None = None
    event_type: str | None = None
    headers: tuple[MessageHeader, ...] = ()
    link_name: str | None = None
    link_target: str | None = None
    message_flow_id: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Filter:
    """A recipient Flowmailer no longer sends to, and why (``filters``)."""

    account_id: str | None = None
    address: str | None = None
    date: datetime | None = None
    expires_on: datetime | None = None
    id: str | None = None
    message_return: MessageReturn | None = None
    message_type: MessageType | str | None = None
    reason: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class MessageReturn:
    """The event (a bounce, a complaint) that put a recipient on a filter."""

    data: object = attrs.field(default=None, hash=False)
    device_category: str | None = None
    extra_data: object = attrs.field(default=None, hash=False)
    id: str | None = None
    inserted: datetime | None = None
    link_name: str | None = None
    link_target: str | None = None
    message_id: str | None = None
    message_tags: object = attrs.field(default=None, hash=False)
    mta: str | None = None
    operating_system: str | None = None
    operating_system_version: str | None = None
    received: datetime | None = None
    referer: str | None = None
    remote_addr: str | None = None
    snippet: str | None = None
    source_mta: str | None = None
    sub_type: str | None = None
    tag: str | None = None
    type: EventType | str | None = None
    user_agent: str | None = None
    user_agent_display_name: str | None = None
    user_agent_string: str | None = None
    user_agent_type: str | None = None
    user_agent_version: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Flow:
    """A message flow: what Flowmailer does with the messages it selects (``flows``)."""

    description: str | None = None
    id: str | None = None
    message_summary: MessageSummary | None = None
    statistics: tuple[Sample, ...] = ()
    steps: tuple[FlowStep, ...] = ()
    template_id: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class MessageSummary:
    """Counts over a flow's, source's or recipient's messages."""

    average_deliver_time_millis: int | None = None
    clicked: int | None = None
    delivered: int | None = None
    opened: int | None = None
    processed: int | None = None
    sent: int | None = None
    unique_clicked: int | None = None
    unique_opened: int | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class FlowCondition:
    """One condition of a flow rule."""

    expression: str | None = None
    match_type: str | None = None
    name: str | None = None
    type: str | None = None
    value: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class FlowRuleHierarchyItem:
    """An event flow rule in its tree (``event_flow_rules/hierarchy``)."""

    conditions: tuple[FlowCondition, ...] = ()
    flow: ObjectRef | None = None
    nodes: tuple[FlowRuleHierarchyItem, ...] = ()
    parent_id: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class FlowRuleItem:
    """A flow and the conditions that select it (``flow_rules``)."""

    conditions: tuple[FlowCondition, ...] = ()
    flow: ObjectRef | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class FlowRuleSimple:
    """Which messages a flow selects (``flows/{id}/rule``)."""

    data_expressions: tuple[DataExpression, ...] = ()
    flow_id: str | None = None
    flow_selector: str | None = None
    headers: tuple[MessageHeader, ...] = ()
    sender: str | None = None
    source_id: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class FlowTemplate:
    """A flow template: the steps new flows start from (``flow_templates``)."""

    description: str | None = None
    editable: bool | None = None
    id: str | None = None
    steps: tuple[FlowStep, ...] = ()
    template_id: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class MessageArchive:
    """A message as one flow step archived it (``messages/{id}/archive``)."""

    attachments: tuple[ArchivedAttachment, ...] = ()
    data: object = attrs.field(default=None, hash=False)
    flow_step_id: str | None = None
    html: str | None = None
    message_details_link: str | None = None
    message_type: MessageType | str | None = None
    online_link: str | None = None
    online_version: bool | None = None
    subject: str | None = None
    text: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class MessageHold:
    """A message Flowmailer holds back, and why (``message_hold``)."""

    backend_done: datetime | None = None
    data: str | None = None
    data_coding: int | None = None
    error_text: str | None = None
    extra_data: object = attrs.field(default=None, hash=False)
    flow: ObjectRef | None = None
    message_id: str | None = None
    message_type: MessageType | str | None = None
    reason: str | None = None
    recipient: str | None = None
    sender: str | None = None
    source: ObjectRef | None = None
    status: str | None = None
    submitted: datetime | None = None
    transaction_id: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Recipient:
    """A recipient: its filters and message counts (``recipient/{address}``)."""

    address: str | None = None
    filters: tuple[Filter, ...] = ()
    message_summary: MessageSummary | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Role:
    """A role a credential or user may have (``roles``)."""

    description: str | None = None
    name: str | None = None
    id: str | None = None
    roles: object = attrs.field(default=None, hash=False)
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class SenderDomain:
    """A domain messages are sent from, with the DNS records it needs (``sender_domains``)."""

    dns_records: tuple[DnsRecord, ...] = ()
    id: str | None = None
    return_path_domain: str | None = None
    sender_domain: str | None = None
    warnings: tuple[ErrorDetail, ...] = ()
    web_domain: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Source:
    """A source system that submits messages (``sources``)."""

    description: str | None = None
    dsn_address: str | None = None
    dsn_disable: bool | None = None
    extra_data: object = attrs.field(default=None, hash=False)
    feedback_loop_address: str | None = None
    human_readable_dsn_address: str | None = None
    human_readable_dsn_enable: bool | None = None
    id: str | None = None
    last_active: datetime | None = None
    max_message_size: int | None = None
    message_summary: MessageSummary | None = None
    statistics: tuple[Sample, ...] = ()
    tls_required: bool | None = None
    type: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Template:
    """A template a flow renders (``templates``)."""

    content_id: str | None = None
    data: str | None = None
    decode_base64: bool | None = None
    description: str | None = None
    disposition: str | None = None
    do_not_update_on_copy: bool | None = None
    filename: str | None = None
    id: str | None = None
    mime_type: str | None = None
    template_engine: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class BouncedMessage(Message):
    """A message that was not delivered, with the bounce that says why (``undeliveredmessages``)."""

    bounce_received: datetime | None = None
    bounce_snippet: str | None = None
    bounce_sub_type: str | None = None
    bounce_type: str | None = None
