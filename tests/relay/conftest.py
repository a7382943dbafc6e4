"""``relay_kind``: a test that asks for it runs once per relay (see ``tests.relay.kinds``)."""

from tests.relay.kinds import relay_kind

__all__ = ["relay_kind"]
