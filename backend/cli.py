"""Command line of the backend: ``python -m backend COMMAND ...``.

Each command lives in its own module and exposes ``main(argv) -> int``; this file only
dispatches, so that ``python -m backend info`` does not pay for importing the training code.

Exit codes: 0 success, 2 user error (one line on stderr, no traceback), 1 internal error,
130 cancelled by SIGINT/SIGTERM.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from backend.core.errors import Cancelled, UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("backend.segment.cli", "segment rasters into a water mask and a shoreline"),
    "batch": ("backend.batch.cli", "segment many scenes on a Dask cluster, skipping finished ones"),
    "change": (
        "backend.change.cli",
        "shoreline change through time: transects, positions, DSAS rates, plots",
    ),
    "plan": ("backend.segment.plan", "say how segment reads a raster: model, bands (no torch)"),
    "train": ("backend.learning.train", "train a model on SNOWED"),
    "evaluate": (
        "backend.learning.evaluate",
        "evaluate a checkpoint on a SNOWED split (Table I metrics)",
    ),
    "table1": ("backend.learning.table1", "train and evaluate the paper's 12 configurations"),
    "demo": (
        "backend.commands.demo",
        "segment the demo scene with the bundled model, with a quicklook",
    ),
    "info": (
        "backend.commands.info",
        "report Python, torch, CUDA and the default model (for diagnostics)",
    ),
    "model-info": ("backend.commands.info", "describe a checkpoint: architecture, bands, metrics"),
}


def _usage() -> str:
    lines = ["usage: python -m backend COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("")
    lines.append("'python -m backend COMMAND --help' describes one command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"waterseg: error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    entry = getattr(module, "model_info_main" if name == "model-info" else "main")
    try:
        return int(entry(rest) or 0)
    except UserError as exc:
        print(f"waterseg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Cancelled:
        print("waterseg: cancelled", file=sys.stderr)
        return Cancelled.exit_code
    except BrokenPipeError:  # e.g. piped into `head`: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("waterseg: cancelled", file=sys.stderr)
        return Cancelled.exit_code
    except Exception:  # an internal error: keep the traceback for the log
        traceback.print_exc()
        return 1
