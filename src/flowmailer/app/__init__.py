"""The imperative shells: they perform the effects of the core's request loop through ports; every decision is
the core's."""

from flowmailer.app._client import *
from flowmailer.app._event_follower import *
from flowmailer.app._relay import *
from flowmailer.app._slots import *
