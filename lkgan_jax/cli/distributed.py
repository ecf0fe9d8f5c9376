"""Joins a multi-process JAX job before a command computes anything (``LKGAN_DISTRIBUTED=1``).

Every command that can run on several processes (``lkgan train``, ``detect``, ``evaluate``) calls
``maybe_initialize_distributed`` once its flags are checked. This module imports no other command,
so any of them can use it.
"""

from __future__ import annotations

import os


def maybe_initialize_distributed() -> None:
    """Multi-process runs (see launch/) set LKGAN_DISTRIBUTED=1; coordinates may come from the env."""
    if os.environ.get("LKGAN_DISTRIBUTED") != "1":
        return
    import jax

    kwargs = {}
    if "LKGAN_COORDINATOR" in os.environ:
        kwargs = dict(
            coordinator_address=os.environ["LKGAN_COORDINATOR"],
            num_processes=int(os.environ["LKGAN_NUM_PROCESSES"]),
            process_id=int(os.environ["LKGAN_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)  # SLURM / TPU pods / MPI are auto-detected without kwargs
