"""Every ``python`` code block in README.md and docs/ runs, in order, one namespace per page.

A block preceded by the line ``<!-- not-run: reason -->`` is skipped. The README's examples read their
configuration from the environment, as a user's program would: here the environment points them at a
FakeFlowmailer listening on 127.0.0.1 (the certificate names ``localhost``), and they run in a temporary folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmailer.testing import FakeFlowmailer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<skip><!-- not-run: [^>]+-->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def blocks(page: Path) -> list[str]:
    return [m["code"] for m in BLOCK.finditer(page.read_text(encoding="utf-8")) if not m["skip"]]


@pytest.fixture
def user_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeFlowmailer]:
    fake = FakeFlowmailer(addresses=("127.0.0.1",))
    with fake.running():
        credentials = fake.client_credentials("FEATURE_SUBMITMESSAGE")
        url = f"https://localhost:{fake.port}"
        for name, value in {
            "FLOWMAILER_ACCOUNT_ID": credentials.account_id,
            "FLOWMAILER_CLIENT_ID": credentials.client_id,
            "FLOWMAILER_CLIENT_SECRET": credentials.client_secret.reveal(),
            "FLOWMAILER_API_URL": url,
            "FLOWMAILER_LOGIN_URL": url,
            "FLOWMAILER_CA_BUNDLE": str(fake.ca_bundle),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        yield fake


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.name)
def test_page_examples_run(page: Path, user_environment: FakeFlowmailer) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for code in blocks(page):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 - running our own docs is the point


def test_readme_examples_reach_flowmailer(user_environment: FakeFlowmailer) -> None:
    namespace: dict[str, object] = {"__name__": "docs_readme"}
    for code in blocks(ROOT / "README.md"):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    accepted = user_environment.records().accepted
    assert [m.message_id for m in accepted] == [namespace["message_id"]]
    assert (Path.cwd() / "outbox.db").exists()
