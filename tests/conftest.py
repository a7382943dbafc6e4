"""Shared test configuration: Hypothesis profiles (fast by default; FLOWMAILER_HYPOTHESIS=thorough or mutation)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.outbox.postgres_server import PostgresServer, PostgresUnavailableError, running_postgres

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# `just mutate`: the fast profile's examples, the same each run, and no shrinking (a killed mutant needs no minimal
# counterexample, and shrinking one takes longer than finding it).
settings.register_profile(
    "mutation", max_examples=60, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate]
)
settings.load_profile(os.environ.get("FLOWMAILER_HYPOTHESIS", "fast"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session, started on first use; missing binaries fail the run in CI."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailableError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {e}")
        pytest.skip(f"no PostgreSQL server binaries here: {e}")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every ``@pytest.mark.anyio`` test runs under asyncio and under trio (anyio's pytest plugin)."""
    return str(request.param)
