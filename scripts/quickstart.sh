#!/usr/bin/env bash
# Set up the environment (a virtualenv in .venv, from the lock file) and run one thing:
#   bash scripts/quickstart.sh demo    # the demo workflow end to end
#   bash scripts/quickstart.sh test    # the test suite
#   bash scripts/quickstart.sh setup   # only the environment
# PYTHON=python3.12 bash scripts/quickstart.sh ...  makes the venv with another interpreter (3.11+)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"
shift || true

VENV="${EAT_ASD_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"  # the interpreter the venv is made from
# The oldest Python every pinned package supports, as pyproject.toml states it (requires-python).
needed="$(sed -n 's/^requires-python = ">=\([0-9.]*\)"$/\1/p' pyproject.toml)"

# Stop early, naming the Python it needs, rather than deep inside pip.
check_python() {
    local found
    if ! found="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
        echo "quickstart: eat-asd needs Python $needed or newer, and $2 could not be run;" \
            "install Python $needed+ and run again with PYTHON=/path/to/python3.x" >&2
        exit 1
    fi
    if [ "$(printf '%s\n%s\n' "$needed" "$found" | sort -V | head -n1)" != "$needed" ]; then
        echo "quickstart: eat-asd needs Python $needed or newer (requirements.lock pins packages that" \
            "need it); $2 is Python $found. Install Python $needed+ (e.g. apt install python$needed python$needed-venv)" \
            "and run again with PYTHON=python$needed${3:-}" >&2
        exit 1
    fi
}
if [ ! -x "$VENV/bin/python" ]; then
    check_python "$PYTHON" "$PYTHON ($(command -v "$PYTHON" || echo "not on PATH"))"
    "$PYTHON" -m venv "$VENV"
else
    check_python "$VENV/bin/python" "the existing $VENV" ", after removing $VENV"
fi
stamp="$VENV/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r requirements.lock
    "$VENV/bin/python" -m pip install --quiet --no-deps -e .
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"

case "$what" in
    setup) echo "environment ready: source $VENV/bin/activate" ;;
    demo) snakemake --cores "${CORES:-$(nproc)}" --configfile config/demo.yaml "$@" ;;
    test) python -m pytest -ra "$@" ;;
    *) echo "usage: bash scripts/quickstart.sh {demo|test|setup} [extra args]" >&2; exit 2 ;;
esac
