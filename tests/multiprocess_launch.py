"""Runs ``lkgan`` in several processes on loopback with 2 CPU devices each: the multi-host code path, for tests."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Callable

import portpicker
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 400


def launch(args_of: Callable[[int], list[str]], processes: int, env_of: Callable[[int], dict] = lambda process: {},
           check: bool = True) -> list[subprocess.CompletedProcess]:
    """``lkgan ARGS_OF(p)`` in processes p = 0 … processes − 1 (``jax.distributed`` when > 1), stdout and stderr joined.

    With ``check``, a process that fails fails the test with the tail of its output.
    """
    port = portpicker.pick_unused_port()
    procs = []
    for process in range(processes):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2", **env_of(process)}
        if processes > 1:
            env.update(LKGAN_DISTRIBUTED="1", LKGAN_COORDINATOR=f"127.0.0.1:{port}", LKGAN_NUM_PROCESSES=str(processes),
                       LKGAN_PROCESS_ID=str(process))
        cmd = [sys.executable, "-m", "lkgan_jax.cli.main", *args_of(process)]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("multi-process run timed out")
        if check:
            assert proc.returncode == 0, out[-3000:]
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out))
    return results
