"""The imperative shells: they drive the core through ports and hold no policy of their own."""

from flowmailer.app._client import *
from flowmailer.app._event_follower import *
from flowmailer.app._relay import *
