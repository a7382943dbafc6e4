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
