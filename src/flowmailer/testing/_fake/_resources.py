"""The rest of Flowmailer's API in the fake: flows, sources, templates, credentials, rules, filters, archives.

Routes come from the core's endpoint table (``flowmailer.core.ENDPOINTS``), so the fake answers every path
the client can ask for. The collections start with realistic objects (a default source, flow, template and
rule; the fake's own credentials; Flowmailer's roles) and every write changes what later reads return: a
flow rule's ``flowSelector`` decides the flow of the messages submitted with it, a deleted filter is gone from
its recipient, a created source can be read back. Creating checks the fields Flowmailer requires and answers
``400`` with ``allErrors`` naming a missing one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from flowmailer.core import ENDPOINTS, Answer, Endpoint
from flowmailer.testing._fake._validate import error_detail
from flowmailer.testing._fake._wire import Request, Response, json_response

if TYPE_CHECKING:
    from flowmailer.testing._fake._api import FlowmailerState, _Message

__all__ = ["Resources"]

#: The fields Flowmailer's models require when an object is created (the rest are optional).
_REQUIRED = {
    "api_credentials": ("protocol",),
    "event_flows": ("description",),
    "flows": ("description", "templateId"),
    "sender_domains": ("senderDomain",),
    "sources": ("description", "type"),
    "source_users": ("protocol",),
    "templates": ("description", "mimeType", "templateEngine"),
    "users": ("username",),
    "accounts": ("type", "description"),
}
#: Collections the five generic endpoints (list, create, get, update, delete) serve, by their path.
_COLLECTIONS = {
    "api_credentials": "api_credentials",
    "event_flows": "event_flows",
    "flows": "flows",
    "sender_domains": "sender_domains",
    "sources": "sources",
    "sources/{source_id}/users": "source_users",
    "templates": "templates",
    "users": "users",
    "accounts": "accounts",
}
#: Fields a collection's objects are known by in their own listing ("id" for every one but users).
_KEY = {"users": "username"}


def _pattern(endpoint: Endpoint[Any]) -> re.Pattern[str]:
    path = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(endpoint.path))
    return re.compile(path)


#: Each endpoint the fake serves here, with the regular expression its route matches.
_ROUTES = tuple((e, _pattern(e)) for e in ENDPOINTS if e.served_by is None)


def _ids(text: str) -> frozenset[str]:
    return frozenset(unquote(i).strip() for i in text.split(",") if i.strip())


def _errors(status: int, code: str, message: str, field: str | None = None, value: object = None) -> Response:
    return json_response(status, {"allErrors": [error_detail(code, message, field, value, object_name=None)]})


def _not_found(what: str, value: str) -> Response:
    return _errors(404, "notfound", f"{what} {value} not found", what, value)


class Resources:
    """The fake account's resources; every method runs under the state's lock."""

    def __init__(self, state: FlowmailerState) -> None:
        self._state = state
        self._ids = itertools.count(100)
        self.collections: dict[str, dict[str, dict[str, Any]]] = {
            "sources": {"1": {"id": "1", "description": "Default source", "type": "API", "tlsRequired": True}},
            "flows": {
                "1": {
                    "id": "1",
                    "description": "Default flow",
                    "templateId": "1",
                    "steps": [{"id": "1", "type": "template", "template": {"id": "1", "description": "Default"}}],
                }
            },
            "templates": {
                "1": {
                    "id": "1",
                    "description": "Default template",
                    "mimeType": "text/html",
                    "templateEngine": "freemarker-2.3.20",
                    "data": "<p>${html}</p>",
                }
            },
            "event_flows": {"1": {"id": "1", "description": "Default event flow", "steps": []}},
            "sender_domains": {
                "1": {
                    "id": "1",
                    "senderDomain": "example.test",
                    "returnPathDomain": "return.example.test",
                    "webDomain": "links.example.test",
                }
            },
            "api_credentials": {
                str(i): {
                    "id": str(i),
                    "clientId": c.client_id,
                    "description": f"{c.client_id} ({c.role})",
                    "protocol": "API",
                    "roles": [c.role],
                    "sourceId": c.source_id,
                }
                for i, c in enumerate(state.credential_list, start=1)
            },
            "users": {"admin@fake.flowmailer.test": {"username": "admin@fake.flowmailer.test", "roles": ["ADMIN"]}},
            "accounts": {},
        }
        self.nested: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
            ("source_users", "1"): {
                "1": {
                    "id": "1",
                    "username": "smtp-user",
                    "protocol": "SMTP",
                    "description": "SMTP relay",
                    "sourceId": "1",
                }
            }
        }
        #: Each flow's rule: which messages it selects (``flowSelector``; the default flow takes the rest).
        self.flow_rules: dict[str, dict[str, Any]] = {"1": {"flowId": "1", "flowSelector": None, "sourceId": None}}
        self.event_flow_rules: dict[str, dict[str, Any]] = {"1": {"eventFlowId": "1", "eventType": "CLICKED"}}
        self.flow_templates = [{"id": "1", "description": "Basic flow", "editable": False, "templateId": "1"}]
        self.roles = [
            {"id": "1", "name": "ADMIN", "description": "Everything", "roles": ["ADMIN"]},
            {
                "id": "2",
                "name": "FEATURE_SUBMITMESSAGE",
                "description": "Submit only",
                "roles": ["FEATURE_SUBMITMESSAGE"],
            },
        ]
        #: Filter ids deleted: the recipient is sent to again.
        self.deleted_filters: set[str] = set()

    # -- what the rest of the fake asks --------------------------------------------------------------------

    def flow_for(self, selector: object) -> str:
        """The flow a message's ``flowSelector`` selects: the flow whose rule names it, else the default flow."""
        for flow_id, rule in self.flow_rules.items():
            if selector is not None and rule.get("flowSelector") == selector and flow_id in self.collections["flows"]:
                return flow_id
        return "1"

    def describe(self, kind: str, object_id: str) -> dict[str, Any]:
        """``{id, description}`` as another resource names this one."""
        found = self.collections[kind].get(object_id, {})
        return {"id": object_id, "description": found.get("description")}

    # -- routing -------------------------------------------------------------------------------------------

    def handle(
        self, request: Request, route: list[str], matrix: dict[str, str], query: dict[str, str]
    ) -> Response | None:
        """The answer for a route of the table, or None when no endpoint here has that path."""
        path = "/".join(route)
        allowed: list[str] = []
        for endpoint, pattern in _ROUTES:
            if not endpoint.account:
                continue
            match = pattern.fullmatch(path)
            if match is None:
                continue
            allowed.append(endpoint.method)
            if endpoint.method == request.method:
                return self._serve(endpoint, match.groupdict(), request, matrix, query)
        if allowed:
            return _errors(405, "method", f"use {' or '.join(sorted(set(allowed)))}")
        return None

    def create_account(self, request: Request, body: dict[str, Any]) -> Response:
        return self._create("accounts", self.collections["accounts"], body, request, "accounts")

    def _serve(
        self,
        endpoint: Endpoint[Any],
        args: dict[str, str],
        request: Request,
        matrix: dict[str, str],
        query: dict[str, str],
    ) -> Response:
        special: Callable[..., Response] | None = getattr(self, f"_{endpoint.name}", None)
        body: Any = None
        if endpoint.body is not None:
            body = self._state.json_body(request)
            if isinstance(body, Response):
                return body
        if special is not None:
            return special(args=args, body=body, request=request, matrix=matrix, query=query)
        # The collection's path, and for one object the parameter naming it: ``flows`` and ``flows/{flow_id}``.
        collection, _, last = endpoint.path.rpartition("/")
        one = last.startswith("{") and collection in _COLLECTIONS
        kind = _COLLECTIONS[collection if one else endpoint.path]
        items = self._items(kind, args)
        if isinstance(items, Response):
            return items
        if endpoint.answer is Answer.MANY:
            return json_response(200, list(items.values()))
        if endpoint.answer is Answer.CREATED:
            where = request.path.split(";")[0].split("/", 2)[2]  # the collection's path, after /{account}/
            return self._create(kind, items, body, request, where)
        name = endpoint.path_params[-1]
        object_id = args[name]
        if object_id not in items:
            return _not_found(name, object_id)
        if endpoint.method == "DELETE":
            del items[object_id]
            return Response(200)
        if endpoint.method == "PUT":
            items[object_id] = {**body, _KEY.get(kind, "id"): object_id}
        return json_response(200, items[object_id])

    def _items(self, kind: str, args: dict[str, str]) -> dict[str, dict[str, Any]] | Response:
        if kind != "source_users":
            return self.collections[kind]
        source_id = args["source_id"]
        if source_id not in self.collections["sources"]:
            return _not_found("source_id", source_id)
        return self.nested.setdefault(("source_users", source_id), {})

    def _create(
        self, kind: str, items: dict[str, dict[str, Any]], body: dict[str, Any], request: Request, where: str
    ) -> Response:
        for field in _REQUIRED.get(kind, ()):
            if body.get(field) in (None, ""):
                return _errors(400, "NotNull", "may not be null", field)
        key = _KEY.get(kind, "id")
        object_id = str(body[key]) if key != "id" else str(next(self._ids))
        items[object_id] = {**body, key: object_id}
        if kind == "flows":
            self.flow_rules[object_id] = {"flowId": object_id, "flowSelector": None, "sourceId": None}
        if kind == "event_flows":
            self.event_flow_rules[object_id] = {"eventFlowId": object_id}
        host = request.header("host") or "api.flowmailer.test"
        return Response(201, (("Location", f"https://{host}/{self._state.account_id}/{where}/{object_id}"),))

    # -- the endpoints that are more than a collection -------------------------------------------------------

    def _event_flow_rules(self, **_: Any) -> Response:
        return json_response(200, list(self.event_flow_rules.values()))

    def _event_flow_rules_hierarchy(self, **_: Any) -> Response:
        items = [
            {
                "flow": self.describe("event_flows", rule["eventFlowId"]),
                "conditions": [{"type": "eventType", "value": rule.get("eventType")}],
                "nodes": [],
                "parentId": self.collections["event_flows"].get(rule["eventFlowId"], {}).get("parentId"),
            }
            for rule in self.event_flow_rules.values()
        ]
        return json_response(200, items)

    def _event_flow_rule(self, args: dict[str, str], **_: Any) -> Response:
        rule = self.event_flow_rules.get(args["event_flow_id"])
        return _not_found("event_flow_id", args["event_flow_id"]) if rule is None else json_response(200, rule)

    def _update_event_flow_rule(self, args: dict[str, str], body: dict[str, Any], **_: Any) -> Response:
        if args["event_flow_id"] not in self.collections["event_flows"]:
            return _not_found("event_flow_id", args["event_flow_id"])
        self.event_flow_rules[args["event_flow_id"]] = {**body, "eventFlowId": args["event_flow_id"]}
        return Response(200)

    def _flow_rules(self, **_: Any) -> Response:
        items = [
            {
                "flow": self.describe("flows", flow_id),
                "conditions": [{"type": "flowSelector", "value": rule.get("flowSelector")}],
            }
            for flow_id, rule in self.flow_rules.items()
            if flow_id in self.collections["flows"]
        ]
        return json_response(200, items)

    def _flow_templates(self, **_: Any) -> Response:
        return json_response(200, self.flow_templates)

    def _roles(self, **_: Any) -> Response:
        return json_response(200, self.roles)

    def _flow_rule(self, args: dict[str, str], **_: Any) -> Response:
        flow_id = args["flow_id"]
        if flow_id not in self.collections["flows"]:
            return _not_found("flow_id", flow_id)
        return json_response(200, self.flow_rules.get(flow_id, {"flowId": flow_id}))

    def _update_flow_rule(self, args: dict[str, str], body: dict[str, Any], **_: Any) -> Response:
        flow_id = args["flow_id"]
        if flow_id not in self.collections["flows"]:
            return _not_found("flow_id", flow_id)
        self.flow_rules[flow_id] = {**body, "flowId": flow_id}
        return Response(200)

    def _flow_messages(self, args: dict[str, str], request: Request, matrix: dict[str, str], **_: Any) -> Response:
        flow_id = args["flow_id"]
        if flow_id not in self.collections["flows"]:
            return _not_found("flow_id", flow_id)
        return self._state.item_listing(request, matrix, lambda m: m.flow_id == flow_id)

    def _source_messages(self, args: dict[str, str], request: Request, matrix: dict[str, str], **_: Any) -> Response:
        source_id = args["source_id"]
        if source_id not in self.collections["sources"]:
            return _not_found("source_id", source_id)
        return self._state.item_listing(request, matrix, lambda m: m.source_id == source_id)

    def _flow_stats(self, args: dict[str, str], matrix: dict[str, str], **_: Any) -> Response:
        flow_id = args["flow_id"]
        if flow_id not in self.collections["flows"]:
            return _not_found("flow_id", flow_id)
        return self._state.stats(matrix, matrix, lambda m: m.flow_id == flow_id)

    def _source_stats(self, args: dict[str, str], matrix: dict[str, str], **_: Any) -> Response:
        source_id = args["source_id"]
        if source_id not in self.collections["sources"]:
            return _not_found("source_id", source_id)
        return self._state.stats(matrix, matrix, lambda m: m.source_id == source_id)

    def _message_holds(self, request: Request, matrix: dict[str, str], **_: Any) -> Response:
        return self._state.item_listing(request, matrix, self._state.held, render=self._hold_json)

    def _message_hold(self, args: dict[str, str], **_: Any) -> Response:
        message = self._state.message(args["message_id"])
        if message is None or not self._state.held(message):
            return _not_found("message_id", args["message_id"])
        return json_response(200, self._hold_json(message, {}))

    def _hold_json(self, m: _Message, query: dict[str, str]) -> dict[str, Any]:
        return {
            "messageId": m.id,
            "messageType": m.body["messageType"],
            "sender": m.body["senderAddress"],
            "recipient": m.body["recipientAddress"],
            "reason": "scheduled",
            "status": "SCHEDULED",
            "submitted": self._state.timestamp(m.submitted),
            "flow": self.describe("flows", m.flow_id),
            "source": self.describe("sources", m.source_id),
        }

    def _archive(self, m: _Message, query: dict[str, str], step: str) -> dict[str, Any]:
        body = m.body
        attachments = [
            {k: v for k, v in a.items() if k != "content" or query.get("addattachments", "").lower() in ("true", "1")}
            for a in body.get("attachments") or ()
            if isinstance(a, dict)
        ]
        archive = {
            "flowStepId": step,
            "messageType": body["messageType"],
            "subject": body.get("subject"),
            "html": body.get("html"),
            "text": body.get("text"),
            "onlineLink": f"https://web.flowmailer.test/online/{m.id}",
            "onlineVersion": True,
            "attachments": attachments,
        }
        if query.get("adddata", "").lower() in ("true", "1"):
            archive["data"] = body.get("data")
        return archive

    def _message_archive(self, args: dict[str, str], query: dict[str, str], **_: Any) -> Response:
        message = self._state.message(args["message_id"])
        if message is None:
            return _not_found("message_id", args["message_id"])
        return json_response(200, [self._archive(message, query, "1")])

    def _message_error_archive(self, args: dict[str, str], query: dict[str, str], **_: Any) -> Response:
        message = self._state.message(args["message_id"])
        if message is None or not message.bounced:
            return _not_found("message_id", args["message_id"])
        return json_response(200, self._archive(message, query, "error"))

    def _message_archive_attachment(self, args: dict[str, str], **_: Any) -> Response:
        message = self._state.message(args["message_id"])
        if message is None or args["flow_step_id"] != "1":
            return _not_found("message_id", args["message_id"])
        for attachment in message.body.get("attachments") or ():
            if isinstance(attachment, dict) and attachment.get("contentId") == args["content_id"]:
                return json_response(200, attachment)
        return _not_found("content_id", args["content_id"])

    def _resend_message(self, args: dict[str, str], body: dict[str, Any], **_: Any) -> Response:
        message = self._state.message(args["message_id"])
        if message is None:
            return _not_found("message_id", args["message_id"])
        recipient = body.get("recipientAddress") or message.body["recipientAddress"]
        self._state.resend(message, recipient)
        return Response(200)

    def _recipient(self, args: dict[str, str], **_: Any) -> Response:
        address = args["recipient"]
        messages = [m for m in self._state.messages() if str(m.body["recipientAddress"]).lower() == address.lower()]
        summary = {
            "processed": len(messages),
            "sent": len(messages),
            "delivered": sum(not m.bounced for m in messages),
        }
        filters = [f for f in self._filter_items() if f["address"].lower() == address.lower()]
        return json_response(200, {"address": address, "filters": filters, "messageSummary": summary})

    def _recipient_messages(
        self, args: dict[str, str], request: Request, matrix: dict[str, str], query: dict[str, str], **_: Any
    ) -> Response:
        address = args["recipient"].lower()
        return self._state.reference_listing(
            request, matrix, query, lambda m: str(m.body["recipientAddress"]).lower() == address
        )

    def _sender_messages(
        self, args: dict[str, str], request: Request, matrix: dict[str, str], query: dict[str, str], **_: Any
    ) -> Response:
        address = args["sender"].lower()
        return self._state.reference_listing(
            request, matrix, query, lambda m: str(m.body["senderAddress"]).lower() == address
        )

    def _messages(self, request: Request, matrix: dict[str, str], query: dict[str, str], **_: Any) -> Response:
        flows = _ids(matrix["flow_ids"]) if "flow_ids" in matrix else None
        return self._state.reference_listing(request, matrix, query, lambda m: flows is None or m.flow_id in flows)

    def _undelivered_messages(
        self, request: Request, matrix: dict[str, str], query: dict[str, str], **_: Any
    ) -> Response:
        low, high = 0.0, float("inf")
        if "receivedrange" in matrix:  # when the bounce arrived: in the fake, when the message was submitted
            span = self._state.date_range(matrix["receivedrange"])
            if span is None:
                return _errors(400, "typeMismatch", "receivedrange is start,end in ISO 8601", "receivedrange")
            low, high = span
        return self._state.reference_listing(
            request, matrix, query, lambda m: m.bounced and low <= m.submitted < high, render=self._bounce_json
        )

    def _bounce_json(self, m: _Message, query: dict[str, str]) -> dict[str, Any]:
        return {
            **self._state.render_message(m, query),
            "bounceType": "hard",
            "bounceSubType": "5.1.1",
            "bounceSnippet": "550 5.1.1 recipient unknown",
            "bounceReceived": self._state.timestamp(m.submitted),
        }

    def _filter_items(self) -> list[dict[str, Any]]:
        return [
            {
                "id": f"f{m.seq}",
                "accountId": self._state.account_id,
                "address": m.body["recipientAddress"],
                "messageType": m.body["messageType"],
                "reason": "hardbounce",
                "date": self._state.timestamp(m.submitted),
                "expiresOn": self._state.timestamp(m.submitted + 90 * 86400),
            }
            for m in self._state.messages()
            if m.bounced and f"f{m.seq}" not in self.deleted_filters
        ]

    def _filters(self, request: Request, query: dict[str, str], **_: Any) -> Response:
        return self._state.plain_reference_listing(request, query, self._filter_items())

    def _delete_filter(self, args: dict[str, str], **_: Any) -> Response:
        if args["filter_id"] not in {f["id"] for f in self._filter_items()}:
            return _not_found("filter_id", args["filter_id"])
        self.deleted_filters.add(args["filter_id"])
        return Response(200)

    def _dns_records(self, domain: str) -> list[dict[str, Any]]:
        return [
            {"type": "TXT", "name": domain, "value": "v=spf1 include:spf.flowmailer.test ~all", "status": "OK"},
            {"type": "CNAME", "name": f"fm1._domainkey.{domain}", "value": "fm1.dkim.flowmailer.test", "status": "OK"},
            {"type": "TXT", "name": f"_dmarc.{domain}", "value": "v=DMARC1; p=none", "status": "OK"},
        ]

    def _validate_sender_domain(self, body: dict[str, Any], **_: Any) -> Response:
        domain = body.get("senderDomain")
        if not isinstance(domain, str) or not domain:
            return _errors(400, "NotNull", "may not be null", "senderDomain")
        return json_response(200, {**body, "dnsRecords": self._dns_records(domain)})

    def _with_validation(self, domain: dict[str, Any], query: dict[str, str]) -> Response:
        if query.get("validate", "").lower() in ("true", "1"):
            domain = {**domain, "dnsRecords": self._dns_records(domain["senderDomain"])}
        return json_response(200, domain)

    def _sender_domain(self, args: dict[str, str], query: dict[str, str], **_: Any) -> Response:
        found = self.collections["sender_domains"].get(args["sender_domain_id"])
        if found is None:
            return _not_found("sender_domain_id", args["sender_domain_id"])
        return self._with_validation(found, query)

    def _sender_domain_by_domain(self, args: dict[str, str], query: dict[str, str], **_: Any) -> Response:
        for found in self.collections["sender_domains"].values():
            if str(found.get("senderDomain", "")).lower() == args["domain"].lower():
                return self._with_validation(found, query)
        return _not_found("domain", args["domain"])
