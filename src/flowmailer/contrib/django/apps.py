"""The Django app that brings the management commands."""

from __future__ import annotations

from django.apps import AppConfig


class FlowmailerConfig(AppConfig):
    name = "flowmailer.contrib.django"
    label = "flowmailer"
    verbose_name = "Flowmailer"
