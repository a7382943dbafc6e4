"""The ``flowmailer`` command."""

from __future__ import annotations

import sys

from flowmailer.cli._main import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
