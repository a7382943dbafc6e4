"""deploy/: systemd accepts the unit file, and the commands it and the container file run are ones the CLI takes."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowmailer.cli._main import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "flowmailer-relay.service"


def commands(text: str) -> list[list[str]]:
    return [shlex.split(line.partition("=")[2]) for line in text.splitlines() if re.match(r"ExecStart(Pre)?=", line)]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs Debian's systemd package")
def test_systemd_analyze_verify_accepts_the_unit_file(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this environment's flowmailer.
    script = Path(sys.executable).with_name("flowmailer")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/flowmailer/bin/flowmailer", str(script)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # A setting systemd does not understand is only a warning (exit 0): any output at all fails the test.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_units_commands_parse_as_the_cli_takes_them() -> None:
    found = commands(UNIT.read_text())
    assert [c[0] for c in found] == ["/opt/flowmailer/bin/flowmailer"] * 2
    parser = build_parser()
    init, relay = (parser.parse_args(c[1:]) for c in found)
    assert (init.command, init.action) == ("outbox", "init")
    assert (relay.command, relay.log_format, relay.metrics_addr) == ("relay", "json", ("127.0.0.1", 9464))
    assert "Type=notify" in UNIT.read_text()
    assert "WatchdogSec=" in UNIT.read_text()


def test_the_container_files_command_parses_as_the_cli_takes_it() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    cmd = json.loads(text.partition("\nCMD ")[2].splitlines()[0])
    args = build_parser().parse_args(["--log-format", "json", *cmd])
    assert (args.command, args.metrics_addr) == ("relay", ("0.0.0.0", 9464))  # noqa: S104 - inside a container
