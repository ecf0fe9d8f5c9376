"""Device mesh and sharding rules (docs/design.md §3, §10): one code path from one CPU to a multi-host pod.

Mesh axes are ``data`` (batch) and ``fsdp`` (batch, and large parameters). Parameters and optimiser
state are replicated, except arrays of at least ``fsdp_min_bytes`` whose largest dimension divisible
by the ``fsdp`` size is sharded over ``fsdp`` (a big_vision-style rule).
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(mesh_config: ml_collections.ConfigDict, devices: list | None = None) -> Mesh:
    """A ``(data, fsdp)`` mesh over ``devices`` (default: all); one size may be −1 (fill)."""
    devices = list(jax.devices() if devices is None else devices)
    data, fsdp = int(mesh_config.data), int(mesh_config.fsdp)
    n = len(devices)
    if data == -1 and fsdp == -1:
        raise ValueError("mesh: at most one of mesh.data and mesh.fsdp may be -1")
    if data == -1:
        data = n // fsdp
    if fsdp == -1:
        fsdp = n // data
    if data * fsdp != n or data < 1 or fsdp < 1:
        raise ValueError(f"mesh: data={mesh_config.data} × fsdp={mesh_config.fsdp} does not fit {n} devices")
    grid = np.asarray(devices, dtype=object).reshape(data, fsdp)
    return Mesh(grid, ("data", "fsdp"), axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_sharding(leaf: Any, mesh: Mesh, fsdp_min_bytes: int) -> NamedSharding:
    """Replicate small arrays; shard the largest ``fsdp``-divisible dimension of large ones."""
    fsdp = mesh.shape["fsdp"]
    shape = getattr(leaf, "shape", ())
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize if shape else 0
    if fsdp == 1 or nbytes < fsdp_min_bytes:
        return replicated(mesh)
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return NamedSharding(mesh, P(*spec))
    return replicated(mesh)


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp_min_bytes: int) -> Any:
    """A pytree of shardings matching ``abstract_state`` (e.g. from ``jax.eval_shape``)."""
    def rule(leaf: Any) -> NamedSharding:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            return replicated(mesh)
        return param_sharding(leaf, mesh, fsdp_min_bytes)

    return jax.tree.map(rule, abstract_state)


def check_global_batch(global_batch_size: int, mesh: Mesh, field: str = "train.batch_size") -> None:
    """Raises a one-line error (naming the config ``field``) unless the batch divides over devices and processes."""
    if global_batch_size % mesh.size:
        raise ValueError(f"{field}={global_batch_size} is not divisible by the {mesh.size} devices of the mesh")
    if global_batch_size % jax.process_count():
        raise ValueError(f"{field}={global_batch_size} is not divisible by {jax.process_count()} processes")
