# Every recipe builds or reuses the project's virtual environment itself: a fresh machine needs python3 and pip.
set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")
venv := ".venv"
bin := venv / "bin"

# List the recipes.
default:
    @just --list

# Create or refresh .venv when pyproject.toml changed (pip >= 25.1 reads dependency groups).
venv:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{bin}}/python ] || [ pyproject.toml -nt {{venv}}/.installed ]; then
        [ -x {{bin}}/python ] || {{python}} -m venv {{venv}}
        {{bin}}/python -m pip install -q --disable-pip-version-check -U 'pip>=25.1'
        {{bin}}/python -m pip install -q --disable-pip-version-check -e '.[all]' --group dev
        touch {{venv}}/.installed
    fi

# The whole test suite (starts its own PostgreSQL and fake Flowmailer servers), with the core coverage gate, then
# tests/core again under the thorough Hypothesis profile (CI runs this). With arguments: just those, fast profile.
test *args: venv
    {{bin}}/coverage erase
    {{bin}}/coverage run -m pytest {{args}}
    {{bin}}/coverage report --include='src/flowmailer/core/*' --fail-under=95
    {{ if args == "" { just_executable() + " test-thorough" } else { "true" } }}

# tests/core under the thorough Hypothesis profile (1,000 examples a property, not 60): about 3-4 minutes on 2 CPUs.
test-thorough: venv
    FLOWMAILER_HYPOTHESIS=thorough {{bin}}/pytest tests/core -q

# Mutation testing (cosmic-ray) of the core's decision modules, one at a time, printing each kill rate; survivors
# not argued equivalent in tests/core/mutants.md are listed. Slow: about 2 s a mutant. `just mutate _retry` for one.
mutate *modules: venv
    {{bin}}/python tests/mutate.py {{modules}}

# Lint, format check, strict types over src, tests and bench, and the import contracts.
check: venv
    {{bin}}/ruff check src tests bench
    {{bin}}/ruff format --check src tests bench
    {{bin}}/mypy
    {{bin}}/lint-imports --no-logo

# Apply ruff's fixes and formatting.
fmt: venv
    {{bin}}/ruff check --fix src tests bench
    {{bin}}/ruff format src tests bench

# Build the documentation with warnings as errors (regenerates the lifecycle diagram first).
docs: venv
    {{bin}}/python docs/gen_lifecycle.py
    NO_MKDOCS_2_WARNING=1 {{bin}}/mkdocs build --strict --site-dir .site

# Benchmarks: each prints ratios measured side by side in one run. `just bench latency --quick`: a smoke test.
# bench_latency's aiohttp peer runs in its own venv (aiohttp is no dependency of flowmailer), made here once.
bench *args: venv
    #!/usr/bin/env bash
    set -euo pipefail
    case " {{args}} " in
        "  " | *" latency "*)
            if [ ! -x bench/.venv-aiohttp/bin/python ]; then
                {{python}} -m venv bench/.venv-aiohttp
                bench/.venv-aiohttp/bin/python -m pip install -q --disable-pip-version-check 'aiohttp>=3.9'
            fi;;
    esac
    {{bin}}/python bench/run.py {{args}}

# The demo: a few thousand messages through a faulty fake Flowmailer, nothing lost or duplicated.
demo *args: venv
    {{bin}}/flowmailer demo {{args}}
