"""Run every benchmark in bench/ in turn (or the ones named): `just bench [name ...]`."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(names: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    if names:
        scripts = [p for p in scripts if p.stem.removeprefix("bench_") in names]
    for script in scripts:
        print(f"\n== {script.stem} ==", flush=True)
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
