"""Run every benchmark in bench/ (or the ones named), each in a fresh process: `just bench [name ...] [--option]`.

Options (``--quick``) are passed to every benchmark run; a benchmark ignores those it does not know."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(args: list[str]) -> int:
    names = [a for a in args if not a.startswith("--")]
    options = [a for a in args if a.startswith("--")]
    scripts = sorted(HERE.glob("bench_*.py"))
    known = {p.stem.removeprefix("bench_") for p in scripts}
    unknown = sorted(set(names) - known)
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    failed = []
    for script in scripts:
        if names and script.stem.removeprefix("bench_") not in names:
            continue
        print(f"\n== {script.stem} ==", flush=True)
        if subprocess.run([sys.executable, str(script), *options], check=False).returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
