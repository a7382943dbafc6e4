"""The pure core: values, decisions and the sans-IO Flowmailer protocol. No sockets, files, clocks or randomness.

Every private module declares its ``__all__``; this package re-exports them so that the rest of the code
imports from ``flowmailer.core`` alone.
"""

from flowmailer.core._addresses import *
from flowmailer.core._breaker import *
from flowmailer.core._claimer import *
from flowmailer.core._claims import *
from flowmailer.core._cursor import *
from flowmailer.core._dns import *
from flowmailer.core._endpoints import *
from flowmailer.core._errors import *
from flowmailer.core._events import *
from flowmailer.core._http import *
from flowmailer.core._lifecycle import *
from flowmailer.core._loop import *
from flowmailer.core._models import *
from flowmailer.core._outbox import *
from flowmailer.core._outcomes import *
from flowmailer.core._protocol import *
from flowmailer.core._ranges import *
from flowmailer.core._relay import *
from flowmailer.core._reports import *
from flowmailer.core._resources import *
from flowmailer.core._retry import *
from flowmailer.core._slots import *
from flowmailer.core._tokens import *
from flowmailer.core._wire import *
