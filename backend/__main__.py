"""``python -m backend``: see backend/cli.py.

The thread policy (backend/threads.py) is applied first: OpenMP reads it when torch loads.
"""

import sys

from backend.threads import apply_policy, choose_policy

apply_policy(choose_policy(sys.argv[1:]))

from backend.cli import main  # noqa: E402 - after the thread policy, before torch loads

sys.exit(main())
