"""`python -m eat_asd` is the `eat-asd` command."""

import sys

from .cli import main

sys.exit(main())
