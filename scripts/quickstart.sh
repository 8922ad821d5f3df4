#!/usr/bin/env bash
# Set up the environment (a virtualenv in .venv, from the lock file) and run one thing:
#   bash scripts/quickstart.sh demo    # the demo workflow end to end
#   bash scripts/quickstart.sh test    # the test suite
#   bash scripts/quickstart.sh setup   # only the environment
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"
shift || true

VENV="${EAT_ASD_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
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
