"""The ``flowmailer`` command."""

from __future__ import annotations

from flowmailer.cli._main import main

__all__ = ["main"]
