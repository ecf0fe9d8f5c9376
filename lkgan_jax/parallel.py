"""Device mesh and sharding rules (docs/design.md §3, §10): one code path from one CPU to a multi-host pod.

Mesh axes are ``data`` (batch) and ``fsdp`` (batch, and large parameters). Parameters and optimiser
state are replicated, except arrays of at least ``fsdp_min_bytes`` whose largest dimension divisible
by the ``fsdp`` size is sharded over ``fsdp`` (a big_vision-style rule).

Evaluation splits items (samples, pairs, images) over processes instead (§7): ``sharded_rows`` gives each
process a contiguous share of whole batches to compute on its own devices and gathers the rows in item
order on every process, so every process reduces the same rows in the same order as one process would.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lkgan_jax.utils.batching import padded_batches

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


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree`` (the same values on every process) as arrays replicated over ``mesh``.

    The values go through the host, so this works when the mesh spans processes (``jax.device_put`` of an
    array committed to one device onto other processes' devices does not).
    """
    return jax.device_put(jax.device_get(tree), replicated(mesh))


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


# Work split over processes (evaluation, docs/design.md §7): each process computes the rows of its own
# share of N items on its own devices, and the rows are gathered in item order on every process.


def process_share(num: int, unit: int = 1) -> range:
    """This process's contiguous share of ``range(num)``: whole units of ``unit`` items (the last unit may be
    short), as evenly as possible, processes in order. ``range(num)`` on one process; empty for a process
    left without a unit."""
    units, process, count = -(-num // unit), jax.process_index(), jax.process_count()
    return range(min(num, units * process // count * unit), min(num, units * (process + 1) // count * unit))


def gather_rows(tree: Any) -> Any:
    """Each leaf's rows (n_p, ...) of every process, concatenated in process order, as NumPy on every process.

    On one process, ``tree`` as NumPy. Leaves must be 32-bit (JAX without x64 would truncate 64-bit ones)
    and agree in everything but their row counts.
    """
    tree = jax.tree.map(np.asarray, tree)
    if jax.process_count() == 1:
        return tree
    for leaf in jax.tree.leaves(tree):
        if leaf.dtype.itemsize > 4:
            raise ValueError(f"gather_rows gathers 32-bit arrays, got {leaf.dtype}")
    counts = multihost_utils.process_allgather(np.int32(len(jax.tree.leaves(tree)[0])))
    longest = max(1, int(counts.max()))

    def gather(leaf: np.ndarray) -> np.ndarray:
        padded = np.zeros((longest, *leaf.shape[1:]), leaf.dtype)
        padded[: len(leaf)] = leaf
        stacked = multihost_utils.process_allgather(padded)  # (processes, longest, ...)
        return np.concatenate([stacked[p, :n] for p, n in enumerate(counts)])

    return jax.tree.map(gather, tree)


def sharded_rows(compute: Callable[[range], Any], num: int, unit: int = 1) -> Any:
    """``compute(range(num))`` with every process computing ``compute(process_share(num, unit))``.

    ``compute(indices)`` gives a pytree of arrays with a row per item of a contiguous range (fewer where
    items are missing, e.g. unreadable images); the rows are gathered in item order (``gather_rows``), so
    every process gets the same NumPy pytree. Shares start and end on whole units, so an item computed
    ``unit`` (or a divisor of it) at a time from the range's start is computed in the same batch as on one
    process. A process left without a share computes the first unit and keeps none of its rows (their
    shapes are needed to gather; it would wait for the others anyway).
    """
    if num < 1 or unit < 1:
        raise ValueError(f"sharded_rows needs positive num and unit, got {num} and {unit}")
    share = process_share(num, unit)
    if share:
        rows = compute(share)
    else:
        rows = jax.tree.map(lambda x: np.asarray(x)[:0], compute(range(min(unit, num))))
    return gather_rows(rows)


def map_rows(function: Callable[[np.ndarray], Any], num: int, batch_size: int) -> Any:
    """``function`` over items 0 … num − 1 in padded batches (``padded_batches``), split over processes.

    ``function(indices (batch_size,))`` gives a pytree of arrays with a row per index; the rows of the
    padding are dropped and those of all processes gathered in item order (``sharded_rows``, whole batches
    per process): every process gets the same NumPy pytree with leading axis ``num``.
    """
    def compute(indices: range) -> Any:
        rows = [
            jax.tree.map(lambda x, count=count: np.asarray(x)[:count], function(indices.start + batch))
            for batch, count in padded_batches(len(indices), batch_size)
        ]
        return jax.tree.map(lambda *parts: np.concatenate(parts), *rows)

    return sharded_rows(compute, num, batch_size)


def sum_rows(function: Callable[[np.ndarray], Any], num: int, batch_size: int) -> Any:
    """Float64 sums over items 0 … num − 1 of ``map_rows(function, num, batch_size)``.

    Each batch's rows are summed and the batch sums added in item order, as a one-process loop over the
    batches adds them, so the sums do not depend on the number of processes.
    """
    def total(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.float64)
        result = 0.0
        for start in range(0, num, batch_size):
            result = result + rows[start: start + batch_size].sum(axis=0)
        return result

    return jax.tree.map(total, map_rows(function, num, batch_size))


def all_processes(flag: bool) -> bool:
    """Whether ``flag`` holds on every process (``flag`` itself on one process)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.all(multihost_utils.process_allgather(np.int32(flag))))


def process_local(tree: Any) -> Any:
    """``tree`` with each array that spans other processes' devices copied whole onto this process's first
    device (a no-op on one process), so that every process can compute with it on its own."""
    def local(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return leaf
        return jax.device_put(multihost_utils.process_allgather(leaf, tiled=True), jax.local_devices()[0])

    return jax.tree.map(local, tree)
