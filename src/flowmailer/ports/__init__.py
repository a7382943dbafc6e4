"""The ports: small Protocols the core owns and the adapters implement. Sync and async are named apart."""

from flowmailer.ports._async_tokens import *
from flowmailer.ports._clock import *
from flowmailer.ports._cursor import *
from flowmailer.ports._observer import *
from flowmailer.ports._outbox import *
from flowmailer.ports._reports import *
from flowmailer.ports._resolver import *
from flowmailer.ports._slots import *
from flowmailer.ports._submitter import *
from flowmailer.ports._tokens import *
from flowmailer.ports._transport import *
