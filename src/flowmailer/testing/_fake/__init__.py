"""FakeFlowmailer: server and transport, API behaviour, faults, records and certificates, one module each."""

from flowmailer.testing._fake._api import API_HOST, LOGIN_HOST, SUBMIT_ROLE, Credential
from flowmailer.testing._fake._certs import WRONG_HOST
from flowmailer.testing._fake._faults import Fault, FaultKind, FaultPlan
from flowmailer.testing._fake._records import AcceptedMessage, ConnectionRecord, Records
from flowmailer.testing._fake._server import DEFAULT_ADDRESSES, DEFAULT_CREDENTIALS, FakeFlowmailer, Mode

__all__ = [
    "API_HOST",
    "DEFAULT_ADDRESSES",
    "DEFAULT_CREDENTIALS",
    "LOGIN_HOST",
    "SUBMIT_ROLE",
    "WRONG_HOST",
    "AcceptedMessage",
    "ConnectionRecord",
    "Credential",
    "FakeFlowmailer",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "Mode",
    "Records",
]
