"""``flowmailer stats``: message counts per day or hour, each settled stretch of time asked of Flowmailer once."""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flowmailer.cli._config import add_config_arguments, config_from_args
from flowmailer.cli._wiring import build_client, store_path
from flowmailer.core import (
    ConfigurationError,
    DateRange,
    RejectedError,
    Stats,
    StatsQuery,
    dump_json,
    format_date,
)

#: Everything but the reconciling credential: the command reads counts, it sends nothing; the outbox's file keeps
#: the settled counts unless --reports names another.
_SETTINGS = ("account_id", "client_id", "client_secret_file", "api_url", "login_url", "ca_bundle", "resolve", "outbox")
_INTERVALS = {"day": 86400, "hour": 3600}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="message counts per day or hour; settled days are asked for once and kept",
        description="Message counts (messagestats) per interval. Counts for time that ended more than a week ago "
        "are kept in --reports and never asked for again; the last week is asked for each time.",
        allow_abbrev=False,
    )
    parser.add_argument("--from", dest="start", required=True, type=_moment, metavar="DATE", help="first day (UTC)")
    parser.add_argument(
        "--to",
        dest="end",
        type=_moment,
        metavar="DATE",
        help="the day after the last (UTC, exclusive; default: the end of the current interval)",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=86400,
        metavar="day|hour|SECONDS",
        help="one row per day (default), per hour, or per this many seconds",
    )
    parser.add_argument("--flow", dest="flows", action="append", default=[], metavar="ID", help="only this flow")
    parser.add_argument(
        "--reports",
        metavar="FILE",
        help="SQLite file keeping settled counts (default: the SQLite outbox's file, in tables of their own)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per interval instead of a table")
    add_config_arguments(parser, _SETTINGS)
    parser.set_defaults(handler=show_stats)


def _moment(text: str) -> datetime:
    """``2026-11-01`` (UTC midnight) or ``2026-11-01T13:00:00Z``."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        value = None
    if value is None or (value.tzinfo is not None and value.utcoffset() != UTC.utcoffset(None)):
        raise argparse.ArgumentTypeError("not a UTC date; give e.g. 2026-11-01 or 2026-11-01T13:00:00Z")
    return value.replace(tzinfo=UTC)


def _interval(text: str) -> int:
    if text in _INTERVALS:
        return _INTERVALS[text]
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError("not an interval; give day, hour or a whole number of seconds")


def show_stats(args: argparse.Namespace) -> int:
    from flowmailer.adapters import SQLiteReportStore

    end = args.end
    if end is None:
        end = _at(math.ceil(time.time() / args.interval) * args.interval)
    config = config_from_args(args)
    try:
        span = DateRange(args.start, end)
        path = store_path(config, args.reports, "--reports")
        with SQLiteReportStore(path) as reports, build_client(config, report_store=reports) as client:
            stats = client.message_stats(span, interval=args.interval, flow_ids=args.flows)
    except ConfigurationError as e:
        told = _in_flags(e, args, end)
        if told is e:
            raise
        raise told from e
    except RejectedError as e:
        if e.status != 403:
            raise
        raise ConfigurationError(
            "--client-id",
            f"Flowmailer refused statistics to client id {config.client_id} ({e})",
            "use a credential whose role may read statistics (a submit-only one may not); set FLOWMAILER_CLIENT_ID "
            "and its secret",
        ) from e
    (_print_json if args.json else _print_table)(stats)
    return 0


def _in_flags(e: ConfigurationError, args: argparse.Namespace, end: datetime) -> ConfigurationError:
    """The library's error about a range or a file, told in the flags that set them."""
    if e.field == "daterange":  # off the interval's boundaries: say which flags would fit
        fits = StatsQuery(args.interval).fitting(DateRange(args.start, end))
        return ConfigurationError(
            "--from/--to", e.problem, f"use e.g. --from {format_date(fits.start)} --to {format_date(fits.end)}"
        )
    if e.field in ("start", "end"):
        to = f"--to {format_date(end)}" if args.end is not None else f"the default --to {format_date(end)}"
        return ConfigurationError(
            "--from/--to", f"{to} is not after --from {format_date(args.start)}", "give a --from before --to"
        )
    if e.field == "path":
        return ConfigurationError("--reports", e.problem, e.fix)
    return e


def _rows(stats: Stats) -> list[tuple[datetime, dict[str, int]]]:
    rows: dict[datetime, dict[str, int]] = {}
    for d in stats.datasets:
        for s in d.samples:
            rows.setdefault(s.timestamp, {})[d.name] = s.value
    return sorted(rows.items())


def _print_json(stats: Stats) -> None:
    for moment, values in _rows(stats):
        sys.stdout.write(dump_json({"timestamp": format_date(moment), **values}).decode() + "\n")


def _print_table(stats: Stats) -> None:
    names = [d.name for d in stats.datasets]
    widths = [max(len(n), 9) for n in names]
    sys.stdout.write(f"{'interval (UTC)':<21}" + "".join(f"{n:>{w + 2}}" for n, w in zip(names, widths, strict=True)))
    sys.stdout.write("\n")
    for moment, values in _rows(stats):
        cells = "".join(f"{values.get(n, ''):>{w + 2}}" for n, w in zip(names, widths, strict=True))
        sys.stdout.write(f"{format_date(moment):<21}{cells}\n")
    totals = stats.totals()
    sys.stdout.write(f"{'total':<21}" + "".join(f"{totals[n]:>{w + 2}}" for n, w in zip(names, widths, strict=True)))
    sys.stdout.write("\n")


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
