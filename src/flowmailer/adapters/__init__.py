"""Adapters: the ports made real (urllib3, trio, resolvers, token stores, SQLite and PostgreSQL outboxes, SQLite
cursor and report stores).

Each private module declares its ``__all__``; adapters that need an optional extra (trio, psycopg, dnspython)
are imported from their own module, not from here, so that this package imports with the base install.
"""

from flowmailer.adapters._clock import *
from flowmailer.adapters._outbox_url import *
from flowmailer.adapters._resolvers import *
from flowmailer.adapters._token_store import *
from flowmailer.adapters._urllib3 import *
from flowmailer.adapters.sqlite_cursor_store import *
from flowmailer.adapters.sqlite_outbox import *
from flowmailer.adapters.sqlite_report_store import *
