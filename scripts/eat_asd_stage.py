#!/usr/bin/env python3
"""Entry point the workflow's rules call: `python scripts/eat_asd_stage.py <stage> [options]`.

It runs the package from this checkout (src/), so jobs need no installed copy of it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from eat_asd.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
