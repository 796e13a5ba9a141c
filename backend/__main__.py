"""``python -m backend``: see backend/cli.py. Process settings first (backend/runtime.py)."""

import sys

from backend.runtime import prepare

prepare(sys.argv[1:])

from backend.cli import main  # noqa: E402 - after the process settings, before torch loads

sys.exit(main())
