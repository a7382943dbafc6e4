"""flowmailer: an independent Python client for Flowmailer's REST API, reliable by construction.

This is the curated public API. It imports neither trio nor psycopg; ``flowmailer.testing`` is separate.
"""

from flowmailer._version import __version__
from flowmailer.core import (
    Accepted,
    Ambiguous,
    AmbiguousError,
    AuthenticationError,
    ConfigurationError,
    ErrorDetail,
    FlowmailerError,
    NotSent,
    Rejected,
    RejectedError,
    Transient,
    TransientError,
)

__all__ = [
    "Accepted",
    "Ambiguous",
    "AmbiguousError",
    "AuthenticationError",
    "ConfigurationError",
    "ErrorDetail",
    "FlowmailerError",
    "NotSent",
    "Rejected",
    "RejectedError",
    "Transient",
    "TransientError",
    "__version__",
]
