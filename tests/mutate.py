"""`just mutate`: cosmic-ray on the core's decision modules, one module at a time, printing each kill rate.

Each module's mutants run in a scratch copy of src/ and tests/ (cosmic-ray edits the module in place, so the work
tree stays usable), first against the module's own test file (fast), then each survivor against all of
tests/core. Mutants inside a function signature's annotations are set aside (with ``from __future__ import
annotations`` they are strings nothing evaluates), and so are those argued equivalent in tests/core/mutants.md.
The target: at least 97 % of the rest killed. Usage: ``python tests/mutate.py [_retry _addresses ...]``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tests" / "core" / "mutants.md"
TARGET = 0.97
#: Each module, and the test file that kills most of its mutants quickly; survivors meet all of tests/core next.
MODULES = {
    "_retry": "tests/core/test_retry.py",
    "_addresses": "tests/core/test_addresses.py",
    "_lifecycle": "tests/core/test_lifecycle.py",
    "_protocol": "tests/core/test_protocol.py",
}
_ENTRY = re.compile(r"^- `(?P<op>[^`]+)` #(?P<n>\d+) on `(?P<line>.*)`")


def _pytest(*paths: str) -> str:
    return f"{sys.executable} -m pytest -x -q -p no:cacheprovider --no-header " + " ".join(paths)


def equivalents(module: str) -> set[tuple[str, str, int]]:
    """(operator, stripped source line, index among that operator's mutants on the line) per argued entry."""
    found: set[tuple[str, str, int]] = set()
    current = None
    for line in EQUIVALENTS.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
        elif current == f"core/{module}.py" and (m := _ENTRY.match(line)):
            found.add((m["op"], m["line"].strip(), int(m["n"])))
    return found


def _signature_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
            notes = [a.annotation for a in every if a is not None and a.annotation is not None]
            spans.extend(
                ((note.lineno, note.col_offset), (note.end_lineno, note.end_col_offset))
                for note in [*notes, node.returns]
                if note is not None and note.end_lineno is not None and note.end_col_offset is not None
            )
    return spans


def run(module: str, scratch: Path) -> tuple[float, list[str]]:
    """Mutate one module in ``scratch``; the kill rate and the survivors, each as an entry for mutants.md."""
    path = f"src/flowmailer/core/{module}.py"
    source = (scratch / path).read_text()
    lines = source.splitlines()
    config, db = scratch / f"{module}.toml", scratch / f"{module}.sqlite"
    config.write_text(
        f'[cosmic-ray]\nmodule-path = "{path}"\ntimeout = 120.0\nexcluded-modules = []\n'
        f'test-command = "{_pytest(MODULES[module])}"\n\n[cosmic-ray.distributor]\nname = "local"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(scratch / "src"), "FLOWMAILER_HYPOTHESIS": "mutation"}
    cosmic = Path(sys.executable).parent / "cosmic-ray"
    subprocess.run([cosmic, "init", config, db], cwd=scratch, env=env, check=True)
    spans = _signature_spans(source)
    argued = equivalents(module)
    keys: dict[str, str] = {}
    per_line: dict[tuple[str, int], int] = defaultdict(int)
    set_aside = {"annotation": 0, "argued": 0}
    with sqlite3.connect(db) as con:
        specs = con.execute(
            "SELECT job_id, operator_name, occurrence, start_pos_row, start_pos_col, end_pos_row, end_pos_col "
            "FROM mutation_specs ORDER BY start_pos_row, start_pos_col, operator_name"
        ).fetchall()
        for job, op, _occurrence, row, col, end_row, end_col in specs:
            text = lines[row - 1].strip()
            n = per_line[op, row]
            per_line[op, row] += 1
            keys[job] = f"- `{op}` #{n} on `{text}`"
            if any(a <= (row, col) and (end_row, end_col) <= b for a, b in spans):
                reason = "annotation"
            elif (op, text, n) in argued:
                reason = "argued"
            else:
                continue
            set_aside[reason] += 1
            con.execute(
                "INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) VALUES (?, ?, ?, ?, ?)",
                ("SKIPPED", f"set aside: {reason}", None, None, job),
            )
    subprocess.run([cosmic, "exec", config, db], cwd=scratch, env=env, check=True)
    with sqlite3.connect(db) as con:
        results = con.execute(
            "SELECT r.job_id, r.worker_outcome, r.test_outcome, s.operator_name, s.occurrence "
            "FROM work_results r JOIN mutation_specs s USING (job_id)"
        ).fetchall()
    killed, survivors = 0, []
    for job, worker, test, op, occurrence in results:
        if worker == "SKIPPED":
            continue
        if test != "SURVIVED":
            killed += 1
            continue
        # Second chance: the whole of tests/core, with the mutant applied by cosmic-ray and the module restored.
        subprocess.run([cosmic, "apply", path, op, str(occurrence)], cwd=scratch, env=env, check=True)
        try:
            second = subprocess.run(
                _pytest("tests/core").split(), cwd=scratch, env=env, capture_output=True, check=False, timeout=600
            )
        except subprocess.TimeoutExpired:
            second = None
        (scratch / path).write_text(source)
        if second is None or second.returncode != 0:
            killed += 1
        else:
            survivors.append(keys[job])
    considered = killed + len(survivors)
    rate = killed / considered if considered else 1.0
    print(
        f"core/{module}.py: {len(specs)} mutants; set aside {set_aside['annotation']} in signatures' annotations "
        f"and {set_aside['argued']} argued equivalent; killed {killed} of {considered} = {rate:.1%}"
        f" (target {TARGET:.0%})",
        flush=True,
    )
    for entry in survivors:
        print(f"  survived: {entry}", flush=True)
    return rate, survivors


def main(modules: list[str]) -> int:
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}: choose from {sorted(MODULES)}", file=sys.stderr)
        return 2
    failed = []
    with tempfile.TemporaryDirectory(prefix="flowmailer-mutate-") as tmp:
        scratch = Path(tmp)
        for part in ("src", "tests"):
            shutil.copytree(ROOT / part, scratch / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(ROOT / "pyproject.toml", scratch / "pyproject.toml")
        for module in modules or list(MODULES):
            rate, _ = run(module, scratch)
            if rate < TARGET:
                failed.append(module)
    if failed:
        print(f"below the {TARGET:.0%} target: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
