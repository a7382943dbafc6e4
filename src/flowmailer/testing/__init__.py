"""Test support for users of flowmailer: a fake Flowmailer server, fakes of every port, conformance suites.

Not imported by ``import flowmailer``. Each private module declares its ``__all__``.
"""

from flowmailer.testing._async_transport_conformance import *
from flowmailer.testing._clock import *
from flowmailer.testing._fake import *
from flowmailer.testing._memory_cursor import *
from flowmailer.testing._memory_outbox import *
from flowmailer.testing._memory_slots import *
from flowmailer.testing._outbox_conformance import *
from flowmailer.testing._report_store_conformance import *
from flowmailer.testing._resolver import *
from flowmailer.testing._slots_conformance import *
from flowmailer.testing._token_store_conformance import *
from flowmailer.testing._transport_conformance import *
