"""Shared test configuration: Hypothesis profiles (fast by default, thorough with FLOWMAILER_HYPOTHESIS=thorough)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FLOWMAILER_HYPOTHESIS", "fast"))
