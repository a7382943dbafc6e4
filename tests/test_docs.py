"""Every ``python`` code block in README.md and docs/ runs, in order, one namespace per page.

A block preceded by the line ``<!-- not-run: reason -->`` is skipped (for examples that need real credentials).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<skip><!-- not-run: [^>]+-->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def blocks(page: Path) -> list[str]:
    return [m["code"] for m in BLOCK.finditer(page.read_text(encoding="utf-8")) if not m["skip"]]


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.name)
def test_page_examples_run(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for code in blocks(page):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 - running our own docs is the point
