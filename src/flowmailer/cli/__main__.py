"""``python -m flowmailer.cli``: the same as the ``flowmailer`` script, where the script is not on PATH."""

from __future__ import annotations

import sys

from flowmailer.cli import main

sys.exit(main())
