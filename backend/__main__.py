"""``python -m backend``: see backend/cli.py. Process settings first (backend/core/runtime.py)."""

import sys

from backend.core.runtime import prepare

prepare(sys.argv[1:])

from backend.cli import main  # noqa: E402 - after the process settings, before torch loads

sys.exit(main())
