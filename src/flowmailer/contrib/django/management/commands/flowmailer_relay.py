"""``manage.py flowmailer_relay``: drain FLOWMAILER_OUTBOX into Flowmailer, as ``flowmailer relay`` does."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from flowmailer.core import FlowmailerError


class Command(BaseCommand):
    help = (
        "Submit what FLOWMAILER_OUTBOX holds until SIGTERM or SIGINT (with --once, until nothing is left to send). "
        "Credentials come from FLOWMAILER_ACCOUNT_ID, FLOWMAILER_CLIENT_ID and FLOWMAILER_CLIENT_SECRET in the "
        "environment, never from settings.py."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="exit once every message is accepted or dead")
        parser.add_argument(
            "--concurrency", type=int, choices=range(1, 11), default=10, metavar="1-10", help="submissions at once"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from flowmailer.adapters import open_outbox_url
        from flowmailer.app import Client, Relay
        from flowmailer.contrib.django._backend import outbox_url

        try:
            outbox = open_outbox_url(outbox_url())
            try:
                with Client.from_env() as client:
                    relay = Relay(outbox, client, concurrency=options["concurrency"])
                    if not options["once"]:
                        relay.install_signal_handlers()
                    stats = relay.run(until_empty=options["once"])
            finally:
                outbox.close()
        except FlowmailerError as e:
            raise CommandError(str(e)) from e
        self.stdout.write(f"relay stopped: {stats.accepted} accepted, {stats.dead} dead, {stats.released} released")
