"""The pytest plugin, as a project that installed flowmailer[testing] gets it: through the pytest11 entry point,
in a pytest run of its own (a subprocess, so nothing of this suite's configuration or conftest helps)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
from flowmailer import Relay, SubmitMessage

MESSAGE = SubmitMessage(sender_address="shop@example.com", recipient_address="ann@example.com", subject="Hi", text="x")


def test_submit(fake_flowmailer, flowmailer_client):
    message_id = flowmailer_client.submit(MESSAGE)
    assert [m.message_id for m in fake_flowmailer.records().accepted] == [message_id]


def test_each_test_has_its_own_records(fake_flowmailer):
    assert fake_flowmailer.records().accepted == ()


def test_outbox_through_relay(fake_flowmailer, flowmailer_client, flowmailer_outbox, tmp_path):
    flowmailer_outbox.enqueue(MESSAGE)
    stats = Relay(flowmailer_outbox, flowmailer_client).drain()
    assert stats.accepted == 1
    assert len(fake_flowmailer.records().accepted) == 1
    assert (tmp_path / "flowmailer-outbox.db").exists()
"""


def test_a_project_gets_the_fixtures_from_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=3)


def test_without_the_plugin_the_fixtures_are_missing(pytester: pytest.Pytester) -> None:
    """The control: the fixtures above come from the plugin, not from anything else in the environment."""
    pytester.makepyfile(test_user="def test_fake(fake_flowmailer):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:flowmailer")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_flowmailer' not found*"])
