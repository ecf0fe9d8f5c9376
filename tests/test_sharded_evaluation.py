"""Evaluation over processes: shares of whole batches, and 2 processes × 2 CPU devices on loopback giving
the numbers of one process (`lkgan evaluate`, and `lkgan detect` with its landmark evaluation)."""

import json
import shutil

import jax
import numpy as np
import pytest

from lkgan_jax import parallel
from lkgan_jax.evaluation.run_metrics import take_rows
from multiprocess_launch import launch



@pytest.mark.parametrize("processes", [1, 2, 3, 5])
def test_process_shares_are_contiguous_whole_units_covering_every_item(monkeypatch, processes):
    monkeypatch.setattr(jax, "process_count", lambda: processes)
    for num in (1, 5, 12, 13):
        for unit in (1, 4):
            shares = []
            for process in range(processes):
                monkeypatch.setattr(jax, "process_index", lambda process=process: process)
                shares.append(parallel.process_share(num, unit))
            assert [i for share in shares for i in share] == list(range(num))
            assert all(s.start % unit == 0 and (s.stop % unit == 0 or s.stop == num) for s in shares)
            sizes = [-(-len(s) // unit) for s in shares]  # units per process
            assert max(sizes) - min(sizes) <= 1


def test_take_rows_counts_rows_across_batches():
    batches = [np.arange(0, 3), np.arange(3, 3), np.arange(3, 7), np.arange(7, 9)]
    for indices in (range(0, 9), range(2, 5), range(3, 7), range(8, 12), range(9, 9)):
        taken = list(take_rows(iter(batches), indices))
        assert all(len(part) for part in taken)
        assert np.concatenate(taken or [np.zeros(0, int)]).tolist() == list(indices)[: max(0, 9 - indices.start)]


def test_one_process_gathers_and_sums_like_a_loop_over_batches():
    values = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    rows = parallel.map_rows(lambda index: {"x": values[index], "y": -values[index]}, 7, 3)
    np.testing.assert_array_equal(rows["x"], values)
    total = parallel.sum_rows(lambda index: values[index], 7, 3)
    expected = sum(values[s: s + 3].astype(np.float64).sum(axis=0) for s in range(0, 7, 3))
    np.testing.assert_array_equal(total, expected)


@pytest.fixture(scope="module")
def weights(random_inception_weights):
    return random_inception_weights


@pytest.mark.slow
def test_two_processes_evaluate_like_one_and_only_process_0_writes(tiny_run, weights, tmp_path):
    workdir, _ = tiny_run
    # 12 samples in batches of 4 (eval.batch_size = eval.inception_batch_size = 4): process 0 renders
    # seeds 0..3, process 1 seeds 4..11; the 8 real images and the CPD/locality pairs are split too.
    args = ["evaluate", "--workdir", str(workdir), "--metrics", "fid,kid,cpd,locality", "--num-samples", "12",
            "--config.eval.batch_size=4", "--inception-weights", str(weights), "--allow-unverified-weights"]
    caches = [tmp_path / f"cache_{p}" for p in range(3)]
    launch(lambda p: args + ["--out", str(tmp_path / "one.json")], 1, lambda p: {"LKGAN_CACHE_DIR": str(caches[2])})
    results = launch(lambda p: args + ["--out", str(tmp_path / f"two_{p}.json")], 2,
                      lambda p: {"LKGAN_CACHE_DIR": str(caches[p])})  # as if each host had its own cache
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two_0.json"))
    assert not (tmp_path / "two_1.json").exists() and '"fid"' not in results[1].stdout
    assert len(list(caches[0].rglob("*.npz"))) == 1 and not caches[1].exists()  # the real statistics, by process 0
    assert two["device"]["processes"] == 2 and two["device"]["count"] == 4 and one["device"]["processes"] == 1
    print(f"FID: one process {one['fid']!r}, two processes {two['fid']!r}, difference {two['fid'] - one['fid']:.3g}")
    for key in ("fid", "kid_mean", "kid_std", "cpd", "cpd_raw", "locality/swap_ratio_r0.15", "locality/move_follow_px"):
        assert two[key] == pytest.approx(one[key], rel=1e-12, abs=1e-15), key  # float64 rounding at most
    np.testing.assert_allclose(two["cpd_matrix"], one["cpd_matrix"], rtol=1e-12)
    assert two["num_samples"] == one["num_samples"] == 12 and two["num_real"] == one["num_real"] == 8


@pytest.mark.slow
def test_two_process_detector_training_writes_once_and_evaluates_like_one_process(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run[0], workdir, ignore=shutil.ignore_patterns("detector"))  # other tests train one there
    detect = ["detect", "--workdir", str(workdir), "--config.detect.steps=2", "--config.detect.eval_every=2",
              "--config.detect.eval_metrics=landmarks"]
    results = launch(lambda p: detect, 2)
    assert "detector at step 2" in results[0].stdout and "detector at step 2" not in results[1].stdout
    rows = [json.loads(line) for line in (workdir / "detector" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 2] and "loss" in rows[0]  # a training and an evaluation row, once
    assert json.loads((workdir / "detector" / "config.json").read_text())["generator_step"] == 4
    # The evaluation during training (2 processes, detector in memory) = `lkgan evaluate` on one process.
    launch(lambda p: ["evaluate", "--workdir", str(workdir), "--metrics", "landmarks", "--out", str(tmp_path / "one.json")], 1)
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["landmarks/detector_step"] == 2
    for key in ("landmarks/error_iod_pct", "landmarks/random_detector/error_iod_pct", "landmarks/generated/detector_error_size_pct"):
        assert rows[1][key] == pytest.approx(one[key], rel=1e-12), key
