"""Django configured once for the in-process tests: SQLite in memory, the backend, the app with its commands."""

from __future__ import annotations

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY="tests",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=["flowmailer.contrib.django"],
        EMAIL_BACKEND="flowmailer.contrib.django.EmailBackend",
        DEFAULT_FROM_EMAIL="Shop <shop@example.com>",
        USE_TZ=True,
    )
    django.setup()
