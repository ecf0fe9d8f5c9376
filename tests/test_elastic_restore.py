"""Elastic restore (docs/design.md §10): a run saved on 8 devices (data=4, fsdp=2) resumes on 2 and on 1."""

import json
import shutil

import jax
import numpy as np
import pytest

from lkgan_jax import checkpoint
from lkgan_jax.config_loading import load_config
from lkgan_jax.train import loop
from lkgan_jax.workdir import CHECKPOINT_DIR, METRICS_FILE

TINY = "configs/tiny.py"
SAVED_STEP, FINAL_STEP = 2, 4
COMMON = ["--config.train.checkpoint_every=2", "--config.train.sample_every=0", "--config.mesh.fsdp_min_bytes=1024"]
MESHES = {8: (4, 2), 2: (2, 1), 1: (1, 1)}  # devices -> (mesh.data, mesh.fsdp)

pytestmark = pytest.mark.slow


def _config(devices: int, steps: int):
    data, fsdp = MESHES[devices]
    return load_config(TINY, [f"--config.train.steps={steps}", f"--config.mesh.data={data}", f"--config.mesh.fsdp={fsdp}", *COMMON])


def _host(tree) -> list[np.ndarray]:
    """The leaves as NumPy arrays (typed PRNG keys as their raw key data)."""
    leaves = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        leaves.append(np.asarray(jax.device_get(leaf)))
    return leaves


@pytest.fixture(scope="module")
def saved_on_eight(tmp_path_factory):
    """A run trained to step 2 on a (data=4, fsdp=2) mesh of 8 devices, its final state, and the
    same run trained on without interruption to step 4."""
    workdir = tmp_path_factory.mktemp("elastic") / "run"
    state = loop.train_and_evaluate(_config(8, SAVED_STEP), workdir)
    sharded = [leaf for leaf in jax.tree.leaves(state.g_params) if "fsdp" in leaf.sharding.spec]
    assert sharded, "the test needs parameters that the fsdp axis actually shards"
    saved = _host(state)
    uninterrupted = tmp_path_factory.mktemp("elastic") / "uninterrupted"
    shutil.copytree(workdir, uninterrupted)
    loop.train_and_evaluate(_config(8, FINAL_STEP), uninterrupted)
    return workdir, saved, _rows(uninterrupted)


def _rows(workdir) -> dict[int, dict]:
    return {row["step"]: row for row in map(json.loads, (workdir / METRICS_FILE).read_text().splitlines())}


@pytest.mark.parametrize("devices", [2, 1])
def test_run_saved_on_eight_devices_resumes_on_fewer(saved_on_eight, tmp_path, devices, caplog):
    source, saved, uninterrupted = saved_on_eight
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    config = _config(devices, FINAL_STEP)
    trainer = loop.build_trainer(config, jax.devices()[:devices])
    manager = checkpoint.make_manager(workdir / CHECKPOINT_DIR, 3, read_only=True)
    with jax.set_mesh(trainer.mesh):
        target = checkpoint.abstract_target(trainer.abstract_state, trainer.state_shardings)
        restored = checkpoint.restore(manager, SAVED_STEP, target)
    manager.close()
    assert {leaf.sharding.mesh.devices.shape for leaf in jax.tree.leaves(restored)} == {MESHES[devices]}
    for before, after in zip(saved, _host(restored), strict=True):
        np.testing.assert_array_equal(before, after)  # every array, bit for bit

    with caplog.at_level("INFO"):
        final = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:devices])
    assert int(final.step) == FINAL_STEP and int(final.nonfinite_step) == -1
    assert any(f"resumed from {workdir / CHECKPOINT_DIR} at step {SAVED_STEP}" in r.getMessage() for r in caplog.records)
    rows = _rows(workdir)
    assert sorted(rows) == [2, 4]
    data_state = json.loads((workdir / CHECKPOINT_DIR / str(FINAL_STEP) / "data" / "process_0-of-1.json").read_text())
    assert data_state == {"global_next_index": FINAL_STEP * config.train.batch_size}  # no example repeated or skipped
    # Same data, same keys: step 4 matches the uninterrupted 8-device run up to the order of float
    # reductions over another device count (parameters drift apart by Adam's lr-sized steps only;
    # the gaps measured with the keypoint-recovery head are below 2e-4).
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert rows[FINAL_STEP][name] == pytest.approx(uninterrupted[FINAL_STEP][name], rel=1e-2, abs=1e-3), name
    assert any(not np.array_equal(a, b) for a, b in zip(saved, _host(final))), "training moved on"


def test_data_position_saved_by_another_process_count_is_taken(saved_on_eight, tmp_path, caplog):
    """A checkpoint whose iterator states came from 2 processes resumes this 1-process run where they stood."""
    source, _, _ = saved_on_eight
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    data_dir = workdir / CHECKPOINT_DIR / str(SAVED_STEP) / "data"
    state = json.loads((data_dir / "process_0-of-1.json").read_text())
    (data_dir / "process_0-of-1.json").unlink()
    for index in range(2):
        (data_dir / f"process_{index}-of-2.json").write_text(json.dumps(state))
    with caplog.at_level("INFO"):
        final = loop.train_and_evaluate(_config(8, FINAL_STEP), workdir)
    assert int(final.step) == FINAL_STEP
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"at step {SAVED_STEP}" in messages and "process_0-of-2.json" in messages
    resumed = json.loads((workdir / CHECKPOINT_DIR / str(FINAL_STEP) / "data" / "process_0-of-1.json").read_text())
    assert resumed == {"global_next_index": FINAL_STEP * 8}
    assert not list(workdir.joinpath(CHECKPOINT_DIR).glob(f"{checkpoint.DAMAGED_PREFIX}*")), "nothing was set aside"
