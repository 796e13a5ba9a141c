"""Which torch device runs: one rule for ``segment``, ``train``, ``evaluate`` and ``info``.

"auto" is CUDA when torch sees a GPU, else the CPU; "cuda" or "cuda:N" without a GPU is a
one-line UserError (lesson 2 of the design: never fall back to the CPU silently when a GPU was
asked for). The names a user may type are the contract's ``devices`` plus "cuda:N".
"""

from __future__ import annotations

from backend.core.contract import contract
from backend.core.errors import UserError


def check_device_name(requested: str) -> str:
    """The device name, lower-cased, if it is one of auto, cpu, cuda or cuda:N (no torch);
    UserError otherwise."""
    name = (requested or "auto").lower()
    if name in contract()["devices"] or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    choices = ", ".join(contract()["devices"])
    raise UserError(f"--device {requested!r} is not one of {choices} or cuda:N")


def choose_device(requested: str = "auto") -> str:
    """ "auto" -> "cuda" when torch sees a GPU, else "cpu"; "cuda"/"cuda:N" without a GPU is
    a UserError; the chosen name otherwise."""
    import torch

    name = check_device_name(requested)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"--device {name} but this torch ({torch.__version__}) sees no CUDA GPU; "
            "use --device cpu or install a CUDA build of torch"
        )
    return name
