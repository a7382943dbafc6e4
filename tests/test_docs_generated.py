"""Generated documentation must match the code it is drawn from."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from typing import cast

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_lifecycle_page_matches_the_transition_table() -> None:
    render = cast("Callable[[], str]", runpy.run_path(str(DOCS / "gen_lifecycle.py"))["render"])
    committed = (DOCS / "lifecycle.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/lifecycle.md is stale: run `.venv/bin/python docs/gen_lifecycle.py`"


def test_every_endpoint_is_on_a_page_of_the_api_reference() -> None:
    from flowmailer.core import ENDPOINTS

    pages = "".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    listed = {line.strip().removeprefix("- ") for line in pages.splitlines() if line.startswith("        - ")}
    assert {e.served_by or e.name for e in ENDPOINTS} <= listed
