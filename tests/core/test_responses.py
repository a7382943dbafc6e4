"""Every response model reads whatever Flowmailer's published model types allow, and any JSON object at all.

Flowmailer's descriptions and its answers disagree in places (``MessageEvent.data``); reading must never fail
on shape, or an event follower asks for the same page for ever. The table below is Flowmailer's own typing.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from flowmailer import core
from flowmailer.core import from_json, wire_converter
from tests.strategies import json_values, texts

#: Our response models and the Flowmailer model each mirrors.
MODELS: dict[type[Any], str] = {
    core.Account: "Account",
    core.AccountUser: "AccountUser",
    core.Address: "Address",
    core.ApiCredential: "Credentials",
    core.ArchivedAttachment: "Attachment",
    core.BouncedMessage: "BouncedMessage",
    core.DataExpression: "DataExpression",
    core.DataSet: "DataSet",
    core.DnsRecord: "DnsRecord",
    core.ErrorDetail: "Error",
    core.EventFlow: "EventFlow",
    core.EventFlowRuleSimple: "EventFlowRuleSimple",
    core.Filter: "Filter",
    core.Flow: "Flow",
    core.FlowCondition: "FlowCondition",
    core.FlowRuleHierarchyItem: "FlowRuleHierarchyItem",
    core.FlowRuleItem: "FlowRuleItem",
    core.FlowRuleSimple: "FlowRuleSimple",
    core.FlowStep: "FlowStep",
    core.FlowTemplate: "FlowTemplate",
    core.InboundRecipient: "InboundRecipient",
    core.Message: "Message",
    core.MessageArchive: "MessageArchive",
    core.MessageEvent: "MessageEvent",
    core.MessageHeader: "Header",
    core.MessageHold: "MessageHold",
    core.MessageReturn: "MessageReturn",
    core.MessageSummary: "MessageSummary",
    core.ObjectRef: "ObjectDescription",
    core.Recipient: "Recipient",
    core.Role: "Role",
    core.Sample: "Sample",
    core.SenderDomain: "SenderDomain",
    core.Simulation: "SimulateMessageResult",
    core.Source: "Source",
    core.Template: "Template",
}
#: What the client cannot do without, though Flowmailer types it optional: a report's counter name and the
#: start of each sample (a report cannot be placed without them). Generated present.
REQUIRED = {("DataSet", "name"), ("Sample", "timestamp")}


def _offsets() -> st.SearchStrategy[timezone]:
    return st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def _dates(draw: st.DrawFn) -> str:
    """A date as Flowmailer may write it: milliseconds or not, ``Z``, ``+00:00`` or ``+0000`` style offsets."""
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=_offsets()))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if draw(st.booleans()):
        text += f".{moment.microsecond // 1000:03d}"
    offset = moment.utcoffset() or timedelta()
    minutes = int(offset.total_seconds()) // 60
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    style = (
        draw(st.sampled_from(["Z", "colon", "plain"])) if minutes == 0 else draw(st.sampled_from(["colon", "plain"]))
    )
    if style == "Z":
        return text + "Z"
    return text + f"{sign}{minutes // 60:02d}" + (":" if style == "colon" else "") + f"{minutes % 60:02d}"


_COLLECTION = re.compile(r"\?(\w+)Collection")


def _value(model: str, key: str, published: str, depth: int) -> st.SearchStrategy[Any]:
    optional = published.startswith("?") or published.endswith("or null")
    if (model, key) in REQUIRED:
        optional = False
    kind = published.lstrip("?")
    if m := _COLLECTION.fullmatch(published):
        inner = m[1]
        if inner not in PUBLISHED or depth > 2:
            strategy: st.SearchStrategy[Any] = st.just([])
        else:
            strategy = st.lists(_objects(inner, depth + 1), max_size=2)
    elif "array<int,string>" in kind or kind == "array":
        strategy = st.lists(texts, max_size=3)
    elif "array<int,mixed>" in kind:
        strategy = st.lists(json_values, max_size=3)
    elif kind == "stdClass":
        strategy = st.dictionaries(texts, json_values, max_size=3)
    elif kind == "DateTimeInterface":
        strategy = _dates()
    elif kind == "int":
        strategy = st.integers(-(2**31), 2**31)
    elif kind == "bool":
        strategy = st.booleans()
    elif key == "content" and kind == "string":
        # Flowmailer sends attachment content base64-encoded; text that is not base64 is kept raw
        # in extra (test_attachment_content_that_is_not_base64_is_kept_raw).
        strategy = st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
    elif kind == "string" or kind.startswith("string or"):
        strategy = texts
    elif kind in PUBLISHED:
        strategy = st.just({}) if depth > 2 else _objects(kind, depth + 1)
    else:
        raise AssertionError(f"{model}.{key}: no strategy for {published}")
    return st.none() | strategy if optional else strategy


def _objects(model: str, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object of ``model`` as Flowmailer types it: each key present or absent, each value of its type."""
    fields = PUBLISHED[model]
    return st.fixed_dictionaries(
        {k: _value(model, k, t, depth) for k, t in fields.items() if (model, k) in REQUIRED},
        optional={k: _value(model, k, t, depth) for k, t in fields.items() if (model, k) not in REQUIRED},
    )


@st.composite
def _published(draw: st.DrawFn) -> tuple[type[Any], dict[str, Any]]:
    cls = draw(st.sampled_from(sorted(MODELS, key=lambda c: c.__name__)))
    return cls, draw(_objects(MODELS[cls]))


def _keys(cls: type[Any]) -> set[str]:
    return {
        "from" if a.name == "from_" else "".join(p if i == 0 else p.title() for i, p in enumerate(a.name.split("_")))
        for a in attrs.fields(cls)
    }


def test_every_response_model_is_in_the_table_and_mirrors_every_published_field() -> None:
    exported = {v for n, v in vars(core).items() if not n.startswith("_") and isinstance(v, type)}
    responses = {c for c in exported if attrs.has(c) and "extra" in attrs.fields_dict(c)}
    assert responses - {core.ErrorDetail} <= set(MODELS)
    for cls, model in MODELS.items():
        assert set(PUBLISHED[model]) <= _keys(cls), cls.__name__


@given(_published())
def test_every_response_model_reads_json_of_flowmailers_published_types(case: tuple[type[Any], dict[str, Any]]) -> None:
    cls, raw = case
    value = from_json(json.dumps(raw).encode(), cls, what="body", fix="report it")
    # Nothing of what Flowmailer publishes is pushed aside: each key landed in its field.
    assert getattr(value, "extra", {}) == {}


_any_object = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "type",
            "data",
            "extraData",
            "name",
            "value",
            "flow",
            "tags",
            "events",
            "headersIn",
            "samples",
            "submitted",
            "steps",
            "content",
            "new",
        ]
    )
    | texts,
    json_values,
    max_size=6,
)


_TOLERANT = sorted(set(MODELS) - {core.DataSet, core.Sample, core.ErrorDetail}, key=lambda c: c.__name__)


@given(st.sampled_from(_TOLERANT), _any_object)
def test_a_response_model_reads_any_json_object_and_keeps_what_it_cannot_place(
    cls: type[Any], raw: dict[str, Any]
) -> None:
    value = from_json(json.dumps(raw).encode(), cls, what="body", fix="report it")
    unknown = set(raw) - _keys(cls)
    assert unknown <= set(getattr(value, "extra", {}))


def test_a_date_with_any_offset_reads_as_the_same_moment() -> None:
    moments = [
        from_json(json.dumps({"received": t}).encode(), core.MessageEvent, what="b", fix="").received
        for t in ("2021-12-30T13:04:07.000Z", "2021-12-30T14:04:07+01:00", "2021-12-30T13:04:07+0000")
    ]
    assert moments == [datetime(2021, 12, 30, 13, 4, 7, tzinfo=UTC)] * 3


def test_what_was_read_is_written_back_with_its_extra() -> None:
    raw = {"id": "m1", "toAddressList": [{"address": "a@x.nl", "name": "A"}], "somethingNew": [1]}
    message = from_json(json.dumps(raw).encode(), core.Message, what="b", fix="")
    assert wire_converter.unstructure(message) == raw


#: Flowmailer's published models (its generated SDK, 2025): JSON key and type, ``?`` where null or absent.
PUBLISHED: dict[str, dict[str, str]] = {
    "Account": {
        "id": "?string",
        "type": "string",
        "description": "string",
        "locale": "?string",
        "timeRegion": "?string",
        "accountEnds": "?DateTimeInterface",
    },
    "AccountUser": {
        "username": "string",
        "roles": "array (array<int,string>)",
    },
    "Address": {
        "address": "?string",
        "name": "?string",
    },
    "Attachment": {
        "content": "?string",
        "contentId": "?string",
        "contentType": "string",
        "disposition": "string or ContentDisposition or null",
        "filename": "?string",
    },
    "BouncedMessage": {
        "backendDone": "?DateTimeInterface",
        "backendStart": "?DateTimeInterface",
        "bounceReceived": "?DateTimeInterface",
        "bounceSnippet": "?string",
        "bounceSubType": "?string",
        "bounceType": "?string",
        "events": "?MessageEventCollection",
        "flow": "?ObjectDescription",
        "from": "?string",
        "fromAddress": "?Address",
        "headersIn": "?HeaderCollection",
        "headersOut": "?HeaderCollection",
        "id": "?string",
        "messageDetailsLink": "?string",
        "messageIdHeader": "?string",
        "messageType": "string or MessageType or null",
        "onlineLink": "?string",
        "recipientAddress": "?string",
        "senderAddress": "?string",
        "source": "?ObjectDescription",
        "status": "?string",
        "subject": "?string",
        "submitted": "?DateTimeInterface",
        "tags": "?array (array<int,string> or null)",
        "toAddressList": "?AddressCollection",
        "transactionId": "?string",
    },
    "Credentials": {
        "allowedAddresses": "?array (array<int,string> or null)",
        "allowedSenders": "?array (array<int,string> or null)",
        "authSource": "?string",
        "clientId": "?string",
        "clientSecret": "?string",
        "contactInfo": "?string",
        "description": "?string",
        "id": "?string",
        "inboundDomain": "?string",
        "inboundRecipients": "?InboundRecipientCollection",
        "password": "?string",
        "protocol": "string or Protocol",
        "roles": "?array",
        "sourceId": "?string",
        "username": "?string",
    },
    "DataExpression": {
        "expression": "?string",
        "value": "?string",
    },
    "DataSet": {
        "name": "?string",
        "samples": "?SampleCollection",
    },
    "DnsRecord": {
        "errorMessages": "?array (array<int,string> or null)",
        "name": "?string",
        "status": "string or DnsRecordStatus or null",
        "type": "?string",
        "value": "?string",
        "warningMessages": "?array (array<int,string> or null)",
        "warnings": "?array (array<int,string> or null)",
    },
    "Error": {
        "arguments": "?array (array<int,mixed> or null)",
        "code": "?string",
        "defaultMessage": "?string",
        "field": "?string",
        "objectName": "?string",
        "rejectedValue": "?stdClass",
    },
    "EventFlow": {
        "description": "string",
        "id": "?string",
        "parentId": "?string",
        "steps": "?FlowStepCollection",
    },
    "EventFlowRuleSimple": {
        "dataExpressions": "?DataExpressionCollection",
        "eventFlowId": "?string",
        "eventType": "?string",
        "headers": "?HeaderCollection",
        "linkName": "?string",
        "linkTarget": "?string",
        "messageFlowId": "?string",
    },
    "Filter": {
        "accountId": "?string",
        "address": "string",
        "date": "?DateTimeInterface",
        "expiresOn": "?DateTimeInterface",
        "id": "?string",
        "messageReturn": "?MessageReturn",
        "messageType": "string or MessageType",
        "reason": "?string",
    },
    "Flow": {
        "description": "string",
        "id": "?string",
        "messageSummary": "?MessageSummary",
        "statistics": "?SampleCollection",
        "steps": "?FlowStepCollection",
        "templateId": "string",
    },
    "FlowCondition": {
        "expression": "?string",
        "matchType": "?string",
        "name": "?string",
        "type": "?string",
        "value": "?string",
    },
    "FlowRuleHierarchyItem": {
        "conditions": "?FlowConditionCollection",
        "flow": "?ObjectDescription",
        "nodes": "?FlowRuleHierarchyItemCollection",
        "parentId": "?string",
    },
    "FlowRuleItem": {
        "conditions": "?FlowConditionCollection",
        "flow": "?ObjectDescription",
    },
    "FlowRuleSimple": {
        "dataExpressions": "?DataExpressionCollection",
        "flowId": "?string",
        "flowSelector": "?string",
        "headers": "?HeaderCollection",
        "sender": "?string",
        "sourceId": "?string",
    },
    "FlowStep": {
        "addAttachment": "?FlowStepAddAttachment",
        "aggregate": "?FlowStepAggregate",
        "applyToLinkDomains": "?string",
        "archive": "?FlowStepArchive",
        "discard": "?FlowStepDiscard",
        "divisor": "?int",
        "dnsLookup": "?FlowStepDnsLookup",
        "enabledExpression": "?string",
        "errorOnNotFound": "?bool",
        "externalContent": "?FlowStepExternalContent",
        "externalData": "?FlowStepExternalData",
        "extractData": "?FlowStepExtractData",
        "id": "?string",
        "ldapSearch": "?FlowStepLdapSearch",
        "mailPlusApiCredentials": "?MailPlusAPICredentials",
        "overwriteUrlParameters": "?bool",
        "resubmitMessage": "?FlowStepResubmitMessage",
        "rewriteRecipient": "?FlowStepRewriteRecipient",
        "schedule": "?FlowStepSchedule",
        "setHeader": "?FlowStepSetHeader",
        "setSender": "?FlowStepSetSender",
        "subjectTemplate": "?string",
        "template": "?ObjectDescription",
        "to": "?string",
        "type": "string or FlowStepType",
        "urlParametersTemplate": "?string",
    },
    "FlowStepAddAttachment": {
        "urlTemplate": "string",
    },
    "FlowStepAggregate": {
        "alwaysSendFirst": "?bool",
        "maxTimeSeconds": "?int",
        "quietTimeSeconds": "?int",
    },
    "FlowStepArchive": {
        "onlineLink": "?bool",
        "retention": "string or FlowStepArchiveRetention or null",
    },
    "FlowStepDiscard": {
        "reason": "?string",
    },
    "FlowStepDnsLookup": {
        "domainNameTemplate": "string",
        "ignoreErrors": "?bool",
        "recordType": "string",
        "resultVariable": "string",
    },
    "FlowStepExternalContent": {
        "resultVariable": "?string",
        "urlTemplate": "string",
    },
    "FlowStepExternalData": {
        "fullResponseInVariable": "?bool",
        "requestBodyTemplate": "?string",
        "requestHeaders": "?HeaderCollection",
        "requestMethod": "string or FlowStepExternalDataRequestMethod or null",
        "resultFormat": "?string",
        "resultVariable": "?string",
        "urlTemplate": "string",
    },
    "FlowStepExtractData": {
        "dataType": "?string",
        "filename": "?string",
        "htmlDecodeText": "?bool",
        "mimeType": "?string",
        "removeMimePart": "?bool",
        "selector": "?string",
    },
    "FlowStepLdapSearch": {
        "attributes": "?array (array<int,string> or null)",
        "baseDNTemplate": "string",
        "bindDN": "?string",
        "bindPassword": "?string",
        "filterTemplate": "?string",
        "host": "string",
        "port": "?int",
        "resultVariable": "string",
        "searchScope": "string",
        "tlsMode": "string",
    },
    "FlowStepResubmitMessage": {
        "account": "?ObjectDescription",
        "duplicateMessage": "?bool",
        "flowSelector": "?string",
        "headerName": "?string",
        "headerValue": "?string",
        "source": "?ObjectDescription",
    },
    "FlowStepRewriteRecipient": {
        "messageType": "string or MessageType or null",
        "recipientNameTemplate": "?string",
        "recipientTemplate": "?string",
        "rewriteHeaders": "?bool",
    },
    "FlowStepSchedule": {
        "maxMessagesPerHour": "?int",
        "offsetType": "?string",
        "offsetValue": "?int",
        "scheduledTimeTemplate": "?string",
        "timeRangeDay0": "?string",
        "timeRangeDay1": "?string",
        "timeRangeDay2": "?string",
        "timeRangeDay3": "?string",
        "timeRangeDay4": "?string",
        "timeRangeDay5": "?string",
        "timeRangeDay6": "?string",
        "timeZone": "?string",
    },
    "FlowStepSetHeader": {
        "headerName": "string",
        "headerValue": "?string",
    },
    "FlowStepSetSender": {
        "senderNameTemplate": "?string",
        "senderSetName": "?bool",
        "senderTemplate": "?string",
    },
    "FlowTemplate": {
        "description": "string",
        "editable": "?bool",
        "id": "?string",
        "steps": "?FlowStepCollection",
        "templateId": "?string",
    },
    "Header": {
        "name": "string",
        "value": "?string",
    },
    "InboundRecipient": {
        "destinationRecipient": "string",
        "inboundAddress": "?string",
    },
    "MailPlusAPICredentials": {
        "consumerKey": "string",
        "consumerSecret": "string",
    },
    "Message": {
        "backendDone": "?DateTimeInterface",
        "backendStart": "?DateTimeInterface",
        "events": "?MessageEventCollection",
        "flow": "?ObjectDescription",
        "from": "?string",
        "fromAddress": "?Address",
        "headersIn": "?HeaderCollection",
        "headersOut": "?HeaderCollection",
        "id": "?string",
        "messageDetailsLink": "?string",
        "messageIdHeader": "?string",
        "messageType": "string or MessageType or null",
        "onlineLink": "?string",
        "recipientAddress": "?string",
        "senderAddress": "?string",
        "source": "?ObjectDescription",
        "status": "?string",
        "subject": "?string",
        "submitted": "?DateTimeInterface",
        "tags": "?array (array<int,string> or null)",
        "toAddressList": "?AddressCollection",
        "transactionId": "?string",
    },
    "MessageArchive": {
        "attachments": "?AttachmentCollection",
        "data": "?stdClass",
        "flowStepId": "?string",
        "html": "?string",
        "messageDetailsLink": "?string",
        "messageType": "string or MessageType or null",
        "onlineLink": "?string",
        "onlineVersion": "?bool",
        "subject": "?string",
        "text": "?string",
    },
    "MessageEvent": {
        "data": "?string",
        "deviceCategory": "?string",
        "extraData": "?array (array<int,mixed> or null)",
        "id": "?string",
        "inserted": "?DateTimeInterface",
        "linkName": "?string",
        "linkTarget": "?string",
        "messageId": "?string",
        "messageTags": "?array",
        "mta": "?string",
        "operatingSystem": "?string",
        "operatingSystemVersion": "?string",
        "received": "?DateTimeInterface",
        "referer": "?string",
        "remoteAddr": "?string",
        "snippet": "?string",
        "subType": "?string",
        "tag": "?string",
        "type": "string or EventType",
        "userAgent": "?string",
        "userAgentDisplayName": "?string",
        "userAgentString": "?string",
        "userAgentType": "?string",
        "userAgentVersion": "?string",
    },
    "MessageHold": {
        "backendDone": "?DateTimeInterface",
        "data": "?string",
        "dataCoding": "?int",
        "errorText": "?string",
        "extraData": "?stdClass",
        "flow": "?ObjectDescription",
        "messageId": "?string",
        "messageType": "string or MessageType or null",
        "reason": "?string",
        "recipient": "?string",
        "sender": "?string",
        "source": "?ObjectDescription",
        "status": "?string",
        "submitted": "?DateTimeInterface",
        "transactionId": "?string",
    },
    "MessageReturn": {
        "data": "?string",
        "deviceCategory": "?string",
        "extraData": "?stdClass",
        "id": "?string",
        "inserted": "?DateTimeInterface",
        "linkName": "?string",
        "linkTarget": "?string",
        "messageId": "?string",
        "messageTags": "?array",
        "mta": "?string",
        "operatingSystem": "?string",
        "operatingSystemVersion": "?string",
        "received": "?DateTimeInterface",
        "referer": "?string",
        "remoteAddr": "?string",
        "snippet": "?string",
        "sourceMta": "?string",
        "subType": "?string",
        "tag": "?string",
        "type": "string or EventType",
        "userAgent": "?string",
        "userAgentDisplayName": "?string",
        "userAgentString": "?string",
        "userAgentType": "?string",
        "userAgentVersion": "?string",
    },
    "MessageSummary": {
        "averageDeliverTimeMillis": "?int",
        "clicked": "?int",
        "delivered": "?int",
        "opened": "?int",
        "processed": "?int",
        "sent": "?int",
        "uniqueClicked": "?int",
        "uniqueOpened": "?int",
    },
    "ObjectDescription": {
        "description": "?string",
        "id": "?string",
    },
    "Recipient": {
        "address": "?string",
        "filters": "?FilterCollection",
        "messageSummary": "?MessageSummary",
    },
    "Role": {
        "description": "string",
        "name": "string",
        "id": "?string",
        "roles": "?array",
    },
    "Sample": {
        "timestamp": "?DateTimeInterface",
        "value": "?int",
    },
    "SenderDomain": {
        "dnsRecords": "?DnsRecordCollection",
        "id": "?string",
        "returnPathDomain": "?string",
        "senderDomain": "string",
        "warnings": "?ErrorCollection",
        "webDomain": "?string",
    },
    "SimulateMessageResult": {
        "attachments": "?AttachmentCollection",
        "data": "?stdClass",
        "flow": "?ObjectDescription",
        "html": "?string",
        "messageType": "string or MessageType or null",
        "subject": "?string",
        "text": "?string",
    },
    "Source": {
        "description": "string",
        "dsnAddress": "?string",
        "dsnDisable": "?bool",
        "extraData": "?stdClass",
        "feedbackLoopAddress": "?string",
        "humanReadableDsnAddress": "?string",
        "humanReadableDsnEnable": "?bool",
        "id": "?string",
        "lastActive": "?DateTimeInterface",
        "maxMessageSize": "?int",
        "messageSummary": "?MessageSummary",
        "statistics": "?SampleCollection",
        "tlsRequired": "bool",
        "type": "string or SourceType",
    },
    "Template": {
        "contentId": "?string",
        "data": "?string",
        "decodeBase64": "?bool",
        "description": "string",
        "disposition": "?string",
        "doNotUpdateOnCopy": "?bool",
        "filename": "?string",
        "id": "?string",
        "mimeType": "string or TemplateMimeType",
        "templateEngine": "string or TemplateEngine",
    },
}


def test_numbers_and_booleans_are_read_from_their_json_text_and_anything_else_is_kept_raw() -> None:
    raw = {
        "maxMessageSize": "1024",
        "dsnDisable": "true",
        "tlsRequired": 1,
        "messageSummary": {"sent": 3.0, "opened": 2.5},
    }
    source = from_json(json.dumps(raw).encode(), core.Source, what="b", fix="")
    assert (source.max_message_size, source.dsn_disable, source.tls_required) == (1024, True, None)
    assert source.message_summary is not None
    assert (source.message_summary.sent, source.message_summary.opened) == (3, None)
    assert (source.extra, source.message_summary.extra) == ({"tlsRequired": 1}, {"opened": 2.5})


def test_attachment_content_that_is_not_base64_is_kept_raw() -> None:
    """Found by the thorough profile: "00000" is a string, as published, but no base64; it is kept, not refused."""
    value = from_json(b'{"content": "00000"}', core.ArchivedAttachment, what="body", fix="report it")
    assert value.content is None
    assert value.extra == {"content": "00000"}
