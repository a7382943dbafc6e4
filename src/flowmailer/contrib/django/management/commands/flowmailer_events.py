"""``manage.py flowmailer_events``: follow Flowmailer's message events and send each as a tracking signal."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from flowmailer.core import ConfigurationError, FlowmailerError


class Command(BaseCommand):
    help = (
        "Read message_events after the stored cursor and send each as flowmailer.contrib.django.tracking (and "
        "anymail's tracking signal when anymail is installed); Ctrl-C stops. The cursor is saved after each page, "
        "so an event is delivered at least once. Credentials come from the environment, as for flowmailer_relay."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="read what is there now, then exit")
        parser.add_argument("--name", default="django", help="whose cursor: followers under other names keep theirs")
        parser.add_argument(
            "--cursors",
            metavar="FILE",
            help="SQLite file for the cursor (default: FLOWMAILER_CURSORS, else the SQLite outbox's own file)",
        )
        parser.add_argument("--idle-wait", type=float, default=10.0, help="seconds to wait when nothing is new")

    def handle(self, *args: Any, **options: Any) -> None:
        from flowmailer.adapters import SQLiteCursorStore
        from flowmailer.app import Client, EventFollower
        from flowmailer.contrib.django._tracking import WithMessageTags, send_tracking_signal

        try:
            with Client.from_env() as client, SQLiteCursorStore(self._cursors(options["cursors"])) as cursors:
                follower = EventFollower(WithMessageTags(client), cursors, name=options["name"])
                if options["once"]:
                    events = follower.poll()
                    for event in events:
                        send_tracking_signal(event)
                    follower.commit()
                    handed = len(events)
                else:
                    try:
                        handed = follower.follow(
                            send_tracking_signal, idle_wait=options["idle_wait"], stop=lambda: False
                        )
                    except KeyboardInterrupt:
                        return
        except FlowmailerError as e:
            raise CommandError(str(e)) from e
        self.stdout.write(f"{handed} events")

    @staticmethod
    def _cursors(given: str | None) -> Path:
        from flowmailer.adapters import SqliteLocation, parse_outbox
        from flowmailer.contrib.django._backend import outbox_url

        if given is not None:
            return Path(given)
        if (configured := getattr(settings, "FLOWMAILER_CURSORS", None)) is not None:
            return Path(configured)
        location = parse_outbox(outbox_url())
        if not isinstance(location, SqliteLocation):
            raise ConfigurationError(
                "FLOWMAILER_CURSORS",
                "is not set, and the outbox is not a SQLite file to keep the cursor in",
                "set FLOWMAILER_CURSORS to a SQLite file's path, or pass --cursors FILE",
            )
        return location.path
