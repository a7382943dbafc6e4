"""The core's cost: one submit decision, a submit's own steps, and one 2 KB SubmitMessage serialised beside
json.dumps of the same dict.

Run: .venv/bin/python bench/bench_core.py. Each figure is the best of several rounds, the rounds interleaved so
that both sides of a ratio see the same machine load.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from flowmailer.core import (
    AccessToken,
    AddressBook,
    Header,
    Origin,
    Resolution,
    RetryPolicy,
    SubmitMessage,
    WireResponse,
    classify_submit,
    message_from_json,
    message_to_json,
    submit_request,
    wire_converter,
)

ROUNDS = 5
RESPONSE_201 = WireResponse(
    201, (("Location", "https://api.flowmailer.net/123/messages/20211230130407e3b36e2e92fdbefc86"),)
)
POLICY = RetryPolicy()
API = Origin("api.flowmailer.net")


def message_2kb() -> SubmitMessage:
    return SubmitMessage(
        sender_address="billing@shop.example.com",
        recipient_address="jane.doe@example.org",
        header_from_name="Example Shop",
        header_from_address="billing@shop.example.com",
        header_to_name="Jane Doe",
        subject="Your invoice 2026-0042",
        html="<p>" + "Thank you for your order; your invoice is attached. " * 20 + "</p>",
        text="Thank you for your order; your invoice is attached. " * 10,
        tags=("invoice", "ref:0b7e1c5e-7f7c-4c71-9e0f-3c1c8f7a7b01"),
        data={"name": "Jane", "total": 129.95, "lines": [{"sku": f"A{i}", "qty": i, "price": 9.95} for i in range(4)]},
        flow_selector="invoice",
        schedule_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        headers=(Header("X-Campaign", "winter"),),
    )


def per_call(functions: dict[str, Callable[[], object]], number: int) -> dict[str, float]:
    """Seconds per call, best of ROUNDS, the functions timed in turn within each round."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in functions.items():
            best[name] = min(best[name], timeit.timeit(fn, number=number) / number)
    return best


def decision() -> object:
    outcome = classify_submit(RESPONSE_201, origin=API, account_id="123")
    return outcome, POLICY.next_delay(3, 0.5)


def main() -> None:
    message = message_2kb()
    body = message_to_json(message)
    equivalent = json.loads(body)
    assert 1900 <= len(body) <= 2300, len(body)

    d = per_call(
        {
            "classify_submit(201)": lambda: classify_submit(RESPONSE_201, origin=API, account_id="123"),
            "RetryPolicy.next_delay": lambda: POLICY.next_delay(3, 0.5),
            "decision (both)": decision,
        },
        number=10_000,
    )
    book = AddressBook.from_resolution(Resolution(("192.0.2.1", "192.0.2.2", "192.0.2.3"), 60.0), 0.0)
    token = AccessToken("token", 1e12)
    steps = per_call(
        {
            "SubmitMessage(...)": message_2kb,
            "with_client_reference": lambda: message.with_client_reference("0b7e1c5e7f7c4c719e0f3c1c8f7a7b01"),
            "submit_request(bytes)": lambda: submit_request("123", token, body),
            "AddressBook.pick": lambda: book.pick(1.0),
        },
        number=5_000,
    )
    s = per_call(
        {
            "message_to_json": lambda: message_to_json(message),
            "json.dumps(dict)": lambda: json.dumps(equivalent),
            "unstructure only": lambda: wire_converter.unstructure(message),
            "message_from_json": lambda: message_from_json(body),
        },
        number=2_000,
    )
    for name, seconds in d.items():
        print(f"{name:<24} {seconds * 1e6:8.2f} us")
    print("-- a submit's steps, besides serialising --")
    for name, seconds in steps.items():
        print(f"{name:<24} {seconds * 1e6:8.2f} us")
    print(f"-- {len(body)} byte SubmitMessage --")
    for name, seconds in s.items():
        print(f"{name:<24} {seconds * 1e6:8.2f} us")
    ratio = s["message_to_json"] / s["json.dumps(dict)"]
    print(f"message_to_json / json.dumps = {ratio:.2f}x (target < 3x)")


if __name__ == "__main__":
    main()
