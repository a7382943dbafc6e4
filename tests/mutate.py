"""`just mutate`: cosmic-ray's mutants of the core's decision modules, one module at a time, printing each kill rate.

cosmic-ray lists the mutants (``cosmic-ray init``: its operators, its occurrence numbers); this script runs them,
because starting a Python and a pytest for each mutant cost more than most mutants' tests. One process imports
pytest, Hypothesis and every other third-party module once; each mutant then runs in a fork of it, which imports
flowmailer and the tests afresh from a scratch copy of src/ and tests/ holding the mutated module (the work tree
stays usable). Per-test coverage of the unmutated module, taken once over tests/core under the same derandomized
Hypothesis profile, says which tests execute each line: a test that never executes the mutated statement runs
exactly as on the unmutated code, so each mutant meets only the tests that do, those of the module's own test file
first, then the rest of tests/core. A mutant of a line that runs at import time, or that no test reaches, meets
the whole of the own file, then the whole of tests/core. A failing, erroring or timed-out run
kills the mutant. Mutants inside a function signature's annotations are set aside (with ``from __future__ import
annotations`` they are strings nothing evaluates), and so are those argued equivalent in tests/core/mutants.md.
The target: at least 97 % of the rest killed. Usage: ``python tests/mutate.py [_retry _addresses ...]``.
"""

from __future__ import annotations

import ast
import importlib
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

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
#: An entry's source line ends at the first backtick followed by ``:``, ``,``, `` and`` or the end of the line, so
#: that the argument after it may quote code too.
_ENTRY = re.compile(r"^- `(?P<op>[^`]+)` #(?P<n>\d+) on `(?P<line>.*?)`(?=[:,]| and|$)")
#: Third-party modules imported before the forks are not rewritten by pytest's assertion rewriter, which warns
#: (an error under the suite's ``filterwarnings``); their asserts are not the tests', so the warning is muted.
_PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-W", "ignore::pytest.PytestAssertRewriteWarning"]


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


def _signature_spans(tree: ast.Module) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for node in ast.walk(tree):
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


def _statement_lines(tree: ast.Module, first: int, last: int) -> set[int]:
    """The lines of the innermost statement(s) holding rows first..last: what coverage may record for them.

    A compound statement (``if``, ``def``, ...) counts only its header, the part before its body."""
    lines: set[int] = set()
    for row in range(first, last + 1):
        best: ast.stmt | None = None
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt) and node.end_lineno is not None and node.lineno <= row <= node.end_lineno:
                body = getattr(node, "body", None)
                header_end = body[0].lineno - 1 if isinstance(body, list) and body else node.end_lineno
                if row <= header_end and (best is None or node.lineno >= best.lineno):
                    best = node
        if best is not None:
            body = getattr(best, "body", None)
            end = body[0].lineno - 1 if isinstance(body, list) and body else best.end_lineno or best.lineno
            lines.update(range(best.lineno, end + 1))
        else:
            lines.add(row)
    return lines


class Runner:
    """A warm process that runs pytest in a fork per call, in ``scratch`` (whose src/ comes first on the path)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        #: Seconds a mutant's run may take before it counts as killed (an endless loop): set from the time the
        #: coverage run of all of tests/core takes (slower than any plain run), so a slow machine kills nothing.
        self.timeout = 3600
        #: How many runs the timeout stopped (each a kill): reported, so that a kill by timeout can be looked at.
        self.timeouts = 0
        os.chdir(scratch)
        sys.path[:0] = [str(scratch / "src"), str(scratch)]
        sys.dont_write_bytecode = True  # a mutant's module is compiled from its source, never from a stale .pyc
        os.environ["FLOWMAILER_HYPOTHESIS"] = "mutation"
        os.environ["PYTHONPATH"] = str(scratch / "src")
        # Which third-party modules collecting tests/core imports: imported here once, inherited by every fork.
        probe = (
            "import sys, pytest\n"
            f"sys.path[:0] = [{str(scratch / 'src')!r}, {str(scratch)!r}]\n"
            "pytest.main(['--co', '-q', '-p', 'no:cacheprovider', 'tests/core'])\n"
            "own = ('flowmailer', 'tests', '__main__')\n"
            "print('MODULES', *[m for m in list(sys.modules) if m.split('.')[0] not in own])\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        for name in out.rpartition("MODULES ")[2].split():
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - a module that imports only inside pytest's set-up stays cold
                continue
        assert not [m for m in sys.modules if m.split(".")[0] in ("flowmailer", "tests")], "the fork must import these"

    def pytest(self, args: list[str], log: Path, coverage_of: list[Path] | None = None, timeout: int = 3600) -> bool:
        """Run pytest on ``args`` in a fork; whether every test passed (False on a failure, error or timeout).

        With ``coverage_of``, the fork records which test executes which line of those files, as coverage contexts
        (the node id; the empty context is import time) in ``log`` + ``.coverage``."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 3
            try:
                signal.alarm(timeout)
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                plugins: list[object] = []
                if coverage_of is not None:
                    import coverage

                    cov = coverage.Coverage(
                        data_file=f"{log}.coverage",
                        include=[str(p) for p in coverage_of],
                        config_file=False,
                        branch=False,
                    )
                    plugins.append(_Contexts(cov))
                    cov.start()
                code = int(pytest.main([*_PYTEST_ARGS, *args], plugins=plugins))
                if coverage_of is not None:
                    cov.stop()
                    cov.save()
            except BaseException:  # noqa: BLE001 - whatever stops the run, its traceback goes to the log
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.timeouts += code == -signal.SIGALRM
        if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
            # Not a kill: the selection itself is wrong (a node id pytest cannot find), so stop rather than count it.
            raise SystemExit(f"pytest {args[:3]}... ended with {pytest.ExitCode(code).name}: see {log}")
        return code == 0

    def coverage(self, module_paths: list[Path]) -> dict[Path, dict[int, set[str]]]:
        """Per module, line -> the node ids of the tests in tests/core that execute it ("" for import time)."""
        import coverage

        log = self.scratch / "coverage.log"
        started = time.monotonic()
        if not self.pytest(["tests/core"], log, coverage_of=module_paths):
            raise SystemExit(f"tests/core fails on the unmutated code: see {log}")
        self.timeout = 60 + 3 * math.ceil(time.monotonic() - started)
        data = coverage.CoverageData(basename=f"{log}.coverage")
        data.read()
        return {
            path: {line: set(ids) for line, ids in data.contexts_by_lineno(str(path)).items()} for path in module_paths
        }


class _Contexts:
    """A pytest plugin: each test's lines recorded under its node id."""

    def __init__(self, cov: Any) -> None:
        self.cov = cov

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.cov.switch_context(item.nodeid)
        try:
            return (yield)
        finally:
            self.cov.switch_context("")


def run(module: str, runner: Runner, covered: dict[int, set[str]]) -> tuple[float, list[str]]:
    """Mutate one module in the runner's scratch copy; the kill rate and the survivors, as entries for mutants.md."""
    from cosmic_ray.mutating import mutate_code  # type: ignore[import-untyped]
    from cosmic_ray.plugins import get_operator  # type: ignore[import-untyped]

    scratch = runner.scratch
    path = f"src/flowmailer/core/{module}.py"
    target, test_file = scratch / path, MODULES[module]
    source = target.read_text()
    lines, tree = source.splitlines(), ast.parse(source)
    config, db = scratch / f"{module}.toml", scratch / f"{module}.sqlite"
    config.write_text(
        f'[cosmic-ray]\nmodule-path = "{path}"\ntimeout = 3600.0\nexcluded-modules = []\n'
        f'test-command = "false"\n\n[cosmic-ray.distributor]\nname = "local"\n'
    )
    cosmic = Path(sys.executable).parent / "cosmic-ray"
    subprocess.run([cosmic, "init", config, db], cwd=scratch, check=True, stdout=subprocess.DEVNULL)
    with sqlite3.connect(db) as con:
        specs = con.execute(
            "SELECT operator_name, occurrence, start_pos_row, start_pos_col, end_pos_row, end_pos_col "
            "FROM mutation_specs ORDER BY start_pos_row, start_pos_col, operator_name"
        ).fetchall()
    spans, argued = _signature_spans(tree), equivalents(module)
    per_line: dict[tuple[str, int], int] = defaultdict(int)
    set_aside = {"annotation": 0, "argued": 0, "unbuildable": 0}
    killed, survivors, started, timeouts = 0, [], time.monotonic(), runner.timeouts
    log = scratch / f"{module}.log"
    for done, (op, occurrence, row, col, end_row, end_col) in enumerate(specs):
        if done and not done % 50:
            print(f"  {module}: {done} of {len(specs)} looked at, {killed} killed so far", flush=True)
        text = lines[row - 1].strip()
        n = per_line[op, row]
        per_line[op, row] += 1
        key = f"- `{op}` #{n} on `{text}`"
        if any(a <= (row, col) and (end_row, end_col) <= b for a, b in spans):
            set_aside["annotation"] += 1
            continue
        if (op, text, n) in argued:
            set_aside["argued"] += 1
            continue
        try:
            mutant = mutate_code(source, get_operator(op)(), occurrence)
        except Exception:  # noqa: BLE001 - cosmic-ray's own failure to build it (ExceptionReplacer on a dotted name)
            mutant = None
        if mutant is None:  # neither killed nor survived: counted apart, so that no rate includes it
            set_aside["unbuildable"] += 1
            print(f"  cannot build: {key}", flush=True)
            continue
        ids: set[str] = set()
        for line in _statement_lines(tree, row, end_row):
            ids |= covered.get(line, set())
        if not ids or "" in ids:  # import time, or no test: the module's own file, then all of tests/core
            first, second = [test_file], ["tests/core"]
        else:  # the tests that execute the mutated statement: the module's own first, then the others
            first = sorted(i for i in ids if i.startswith(f"{test_file}::"))
            second = sorted(ids.difference(first))
        target.write_text(mutant)
        try:
            alive = all(runner.pytest(tests, log, timeout=runner.timeout) for tests in (first, second) if tests)
        finally:
            target.write_text(source)
        if alive:
            changed = next(
                (f"{a.strip()} -> {b.strip()}" for a, b in zip(lines, mutant.splitlines(), strict=False) if a != b),
                "",
            )
            survivors.append(f"{key}\n    ({changed})")
            print(f"  survivor so far: {survivors[-1]}", flush=True)
        else:
            killed += 1
    considered = killed + len(survivors)
    rate = killed / considered if considered else 1.0
    elapsed = time.monotonic() - started
    print(
        f"core/{module}.py: {len(specs)} mutants; set aside {set_aside['annotation']} in signatures' annotations "
        f"and {set_aside['argued']} argued equivalent; {set_aside['unbuildable']} cosmic-ray could not build;"
        f" killed {killed} of {considered} = {rate:.1%}"
        f" (target {TARGET:.0%}); {runner.timeouts - timeouts} of them by the {runner.timeout} s timeout;"
        f" {elapsed:.0f} s, {elapsed / max(considered, 1):.2f} s a mutant",
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
        runner = Runner(scratch)
        chosen = modules or list(MODULES)
        paths = {m: scratch / f"src/flowmailer/core/{m}.py" for m in chosen}
        covered = runner.coverage(list(paths.values()))
        for module in chosen:
            rate, _ = run(module, runner, covered[paths[module]])
            if rate < TARGET:
                failed.append(module)
        os.chdir(ROOT)
    if failed:
        print(f"below the {TARGET:.0%} target: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
