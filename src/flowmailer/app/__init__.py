"""The imperative shells: they drive the core through ports; every decision is the core's, though each client
still runs its own request loop around those decisions."""

from flowmailer.app._client import *
from flowmailer.app._event_follower import *
from flowmailer.app._relay import *
