"""FID/KID evaluator without PyTorch: closed forms, numerics, streaming moments, weights, protocols, cache."""

import os
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from lkgan_jax.data import folder_batches
from lkgan_jax.evaluation import features as features_lib
from lkgan_jax.evaluation import fid, inception, inception_weights, kid, preprocess
from lkgan_jax.utils.files import file_sha256


def _spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / (rank or d) + (0 if rank else 0.1 * np.eye(d))


def _stats(mu, sigma, num=100):
    return fid.Statistics(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), num)


# ---------------------------------------------------------------- Fréchet distance


def test_identical_statistics_give_zero():
    sigma = _spd(np.random.default_rng(0), 32)
    stats = _stats(np.ones(32), sigma)
    assert abs(fid.frechet_distance(stats, stats)) < 1e-9 * np.trace(sigma)


def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(1)
    sigma, mu_a, mu_b = _spd(rng, 24), rng.normal(size=24), rng.normal(size=24)
    value = fid.frechet_distance(_stats(mu_a, sigma), _stats(mu_b, sigma))
    assert value == pytest.approx(np.sum((mu_a - mu_b) ** 2), rel=1e-9)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
    mu_a, mu_b = rng.normal(size=16), rng.normal(size=16)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu_a - mu_b) ** 2)
    value = fid.frechet_distance(_stats(mu_a, np.diag(a)), _stats(mu_b, np.diag(b)))
    assert value == pytest.approx(expected, rel=1e-10)


def _reference_trace_sqrt(sigma_a, sigma_b):
    """tr √(Σa Σb) as the nuclear norm of √Σa √Σb (an SVD route independent of the symmetric-eigh one)."""
    def sqrt_psd(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return np.linalg.svd(sqrt_psd(sigma_a) @ sqrt_psd(sigma_b), compute_uv=False).sum()


@pytest.mark.parametrize("seed", [3, 4])
def test_trace_sqrt_matches_float64_references_on_random_spd(seed):
    rng = np.random.default_rng(seed)
    sigma_a, sigma_b = _spd(rng, 64), _spd(rng, 64)
    ours = fid.trace_sqrt_product(sigma_a, sigma_b)
    assert ours == pytest.approx(_reference_trace_sqrt(sigma_a, sigma_b), rel=1e-10)
    scipy_linalg = pytest.importorskip("scipy.linalg")  # a dependency of jax itself
    assert ours == pytest.approx(np.trace(scipy_linalg.sqrtm(sigma_a @ sigma_b)).real, rel=1e-8)


def test_rank_deficient_covariances_stay_finite_and_correct():
    rng = np.random.default_rng(5)
    d, n = 128, 10  # N < d: both covariances have rank 9
    x, y = rng.normal(size=(n, d)), rng.normal(0.3, 1.2, size=(n, d))
    stats_x, stats_y = fid.Statistics.from_features(x), fid.Statistics.from_features(y)
    value = fid.frechet_distance(stats_x, stats_y)
    assert np.isfinite(value) and value > 0
    # Exact for N < d: Σx = AᵀA, Σy = BᵀB with A = centred x / √(N−1), so tr √(Σx Σy) = ‖A Bᵀ‖_* (N × N).
    a, b = (x - x.mean(0)) / np.sqrt(n - 1), (y - y.mean(0)) / np.sqrt(n - 1)
    tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    expected = np.sum((stats_x.mu - stats_y.mu) ** 2) + np.trace(stats_x.sigma) + np.trace(stats_y.sigma) - 2 * tr_sqrt
    assert value == pytest.approx(expected, rel=1e-9)
    assert 0 <= fid.frechet_distance(stats_x, stats_x) < 1e-9 * np.trace(stats_x.sigma)


def test_frechet_distance_rejects_bad_statistics():
    sigma = np.eye(4)
    with pytest.raises(ValueError, match="dimension 4 and 3"):
        fid.frechet_distance(_stats(np.zeros(4), sigma), _stats(np.zeros(3), np.eye(3)))
    with pytest.raises(ValueError, match="non-finite"):
        fid.frechet_distance(_stats(np.full(4, np.nan), sigma), _stats(np.zeros(4), sigma))
    with pytest.raises(ValueError, match=r"mu \(D,\) and sigma \(D, D\)"):
        fid.Statistics(np.zeros(4), np.eye(3), 2)


# ---------------------------------------------------------------- streaming moments


@pytest.mark.parametrize("splits", [[40], [7, 5, 3, 25], [1] * 40, [39, 1]])
def test_running_moments_match_numpy_on_the_concatenation(splits):
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(40, 16)) * rng.uniform(0.1, 10, 16) + 1e3).astype(np.float32)  # large offset
    moments = features_lib.RunningMoments(keep_features=True)
    for chunk in np.split(x, np.cumsum(splits)[:-1]):
        moments.update(chunk)
    moments.update(np.zeros((0, 16), np.float32))
    stats = moments.statistics()
    assert stats.num == 40
    np.testing.assert_allclose(stats.mu, x.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(stats.features, x)


def test_running_moments_errors():
    moments = features_lib.RunningMoments()
    moments.update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2 images"):
        moments.statistics()
    with pytest.raises(ValueError, match=r"\(b, 3\)"):
        moments.update(np.ones((2, 4)))


def test_statistics_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    stats = fid.Statistics.from_features(rng.normal(size=(5, 6)), keep_features=True)
    stats.save(tmp_path / "s.npz")
    loaded = fid.Statistics.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, stats.features)
    assert loaded.num == 5
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fid.Statistics.load(tmp_path / "missing.npz")


# ---------------------------------------------------------------- feature extractor


@pytest.fixture(scope="module")
def random_params():
    return inception.random_params(seed=0)


@pytest.mark.slow
def test_feature_extractor_is_batch_size_independent(random_params):
    images = np.random.default_rng(8).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    by_two = features_lib.FeatureExtractor(params=random_params, batch_size=2)
    by_three = features_lib.FeatureExtractor(params=random_params, batch_size=3)
    padded = by_two.extract(images)  # batches of 2 + a padded batch of 1
    assert padded.shape == (3, 2048) and padded.dtype == np.float32 and np.all(np.isfinite(padded))
    scale = np.abs(padded).max()
    assert scale > 0 and np.abs(padded[0] - padded[1]).max() > 1e-3 * scale  # images differ → features differ
    np.testing.assert_allclose(by_three.extract(images), padded, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(by_two.extract([images[:1], images[1:]]), padded, rtol=0, atol=1e-5 * scale)
    stats = by_two.statistics(iter([images[:2], images[2:]]), keep_features=True)
    np.testing.assert_allclose(stats.mu, padded.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(stats.features, padded)


def test_feature_extractor_rejects_bad_input(random_params):
    extractor = features_lib.FeatureExtractor(params=random_params, batch_size=2)
    with pytest.raises(ValueError, match="uint8"):
        extractor.extract(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        extractor.extract(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="share one size"):
        extractor.extract([np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 16, 16, 3), np.uint8)])
    with pytest.raises(ValueError, match="Unknown FID protocol 'clean'"):
        features_lib.FeatureExtractor(params=random_params, protocol="clean")
    wrong = inception.unflatten_params({**inception.flatten_params(random_params),
                                        "Mixed_6b/branch7x7_2/conv/kernel": np.zeros((1, 7, 160, 128), np.float32)})
    with pytest.raises(ValueError, match=r"Mixed_6b/branch7x7_2/conv/kernel has shape \(1, 7, 160, 128\) but "
                                         r"the network declares \(1, 7, 128, 128\)"):
        features_lib.FeatureExtractor(params=wrong)


# ---------------------------------------------------------------- weight files


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory, random_params):
    state = inception_weights.state_dict_from_params(random_params)
    state["fc.weight"] = np.zeros((1008, 2048), np.float32)
    state["fc.bias"] = np.zeros((1008,), np.float32)
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0, np.int64)
    path = tmp_path_factory.mktemp("weights") / inception_weights.WEIGHTS_FILENAME
    inception_weights.write_torch_state_dict(path, state)
    return path


def test_missing_weight_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        inception_weights.load_inception_params(tmp_path / "nope.pth")
    message = str(info.value)
    assert "\n" not in message and "nope.pth" in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "local path" in message


def test_wrong_hash_is_rejected_unless_unverified_is_allowed(weight_file, random_params):
    with pytest.raises(inception_weights.InceptionWeightsError, match=r"SHA-256 .*expected prefix 6726825d"):
        inception_weights.load_inception_params(weight_file)
    with pytest.warns(UserWarning, match="allow_unverified"):
        params, sha = inception_weights.load_inception_params(weight_file, allow_unverified=True)
    assert sha == file_sha256(weight_file) and len(sha) == 64
    loaded, original = inception.flatten_params(params), inception.flatten_params(random_params)
    assert loaded.keys() == original.keys()
    for name in original:
        np.testing.assert_array_equal(loaded[name], original[name])


def test_verified_hash_loads_without_warning(weight_file, monkeypatch):
    sha = file_sha256(weight_file)
    monkeypatch.setattr(inception_weights, "EXPECTED_SHA256_PREFIX", sha[:8])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, loaded_sha = inception_weights.load_inception_params(weight_file)
    assert loaded_sha == sha


def test_shape_mismatch_and_unknown_keys_name_the_key(random_params):
    state = inception_weights.state_dict_from_params(random_params)
    bad = dict(state, **{"Mixed_7c.branch_pool.conv.weight": np.zeros((192, 2048, 3, 3), np.float32)})
    with pytest.raises(inception_weights.InceptionWeightsError,
                       match=r"Mixed_7c\.branch_pool\.conv\.weight .* shape \(3, 3, 2048, 192\).* declares \(1, 1, 2048, 192\)"):
        inception_weights.params_from_state_dict(bad)
    missing = {k: v for k, v in state.items() if k != "Mixed_5b.branch_pool.bn.running_var"}
    with pytest.raises(inception_weights.InceptionWeightsError, match="missing weights for Mixed_5b/branch_pool/bn/var"):
        inception_weights.params_from_state_dict(missing)
    extra = dict(state, **{"AuxLogits.conv0.conv.weight": np.zeros((128, 768, 1, 1), np.float32)})
    with pytest.raises(inception_weights.InceptionWeightsError, match="unexpected key AuxLogits.conv0.conv.weight"):
        inception_weights.params_from_state_dict(extra)


def test_unreadable_or_unsafe_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file" * 100)
    with pytest.raises(inception_weights.InceptionWeightsError, match="not a readable PyTorch state_dict"):
        inception_weights.read_torch_state_dict(junk)
    unsafe = tmp_path / "unsafe.pth"  # a zip whose pickle would call os.system if it were trusted
    with zipfile.ZipFile(unsafe, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_CallsSystem(tmp_path / "pwned"), protocol=2))
    with pytest.raises(inception_weights.InceptionWeightsError, match=r"refusing to load (posix|os|nt)\.system"):
        inception_weights.read_torch_state_dict(unsafe)
    assert not (tmp_path / "pwned").exists()


class _CallsSystem:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------- pre-processing


def _tf1_resize_reference(image, out_h, out_w):
    """TF1 resize_bilinear (align_corners=False, no half-pixel centres), written per output pixel."""
    in_h, in_w, _ = image.shape
    scale_y, scale_x = np.float32(in_h) / np.float32(out_h), np.float32(in_w) / np.float32(out_w)
    out = np.zeros((out_h, out_w, image.shape[2]), np.float32)
    for y in range(out_h):
        in_y = np.float32(y) * scale_y
        top, bottom = int(np.floor(in_y)), min(int(np.floor(in_y)) + 1, in_h - 1)
        dy = in_y - np.float32(np.floor(in_y))
        for x in range(out_w):
            in_x = np.float32(x) * scale_x
            left, right = int(np.floor(in_x)), min(int(np.floor(in_x)) + 1, in_w - 1)
            dx = in_x - np.float32(np.floor(in_x))
            t = image[top, left] + (image[top, right] - image[top, left]) * dx
            b = image[bottom, left] + (image[bottom, right] - image[bottom, left]) * dx
            out[y, x] = t + (b - t) * dy
    return out


@pytest.mark.parametrize("in_hw,out", [((5, 7), 11), ((13, 9), 4), ((32, 32), 61)])
def test_tf1_resize_matches_the_tf1_formula(in_hw, out):
    image = np.random.default_rng(9).integers(0, 256, (*in_hw, 3)).astype(np.float32)
    ours = np.asarray(preprocess.tf1_resize_bilinear(image[None], out))[0]
    ref = _tf1_resize_reference(image, out, out)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    assert np.abs(ours - ref).max() <= 1e-4


def test_protocols_scale_and_resize():
    rng = np.random.default_rng(10)
    native = rng.integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    np.testing.assert_allclose(preprocess.preprocess(native, "pytorch_fid"), native / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(preprocess.preprocess(native, "tf_legacy"), (native - 128.0) / 128.0, atol=1e-6)
    small = rng.integers(0, 256, (2, 64, 48, 3), dtype=np.uint8)
    torch_like = np.asarray(preprocess.preprocess(small, "pytorch_fid"))
    tf_like = np.asarray(preprocess.preprocess(small, "tf_legacy"))
    assert torch_like.shape == tf_like.shape == (2, 299, 299, 3) and torch_like.dtype == np.float32
    tf_ref = (_tf1_resize_reference(small[1].astype(np.float32), 299, 299) - 128.0) / 128.0
    np.testing.assert_allclose(tf_like[1], tf_ref, atol=1e-6)
    assert np.abs(torch_like - tf_like).max() > 0.1  # the two conventions are not interchangeable
    with pytest.raises(ValueError, match="Unknown FID protocol 'clean'; choose one of pytorch_fid, tf_legacy"):
        preprocess.preprocess(small, "clean")
    with pytest.raises(ValueError, match="uint8"):
        preprocess.preprocess(small.astype(np.float32), "pytorch_fid")


# ---------------------------------------------------------------- KID


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(11)
    d = 64
    a, b = rng.gamma(2.0, size=(600, d)), rng.gamma(2.0, size=(600, d))
    shifted = rng.gamma(2.0, size=(600, d)) + 0.5
    same_mean, same_std = kid.kernel_inception_distance(a, b, num_subsets=20, subset_size=300)
    shift_mean, shift_std = kid.kernel_inception_distance(a, shifted, num_subsets=20, subset_size=300)
    assert shift_mean > 10 * shift_std and shift_mean > 0
    assert abs(same_mean) < 0.02 * shift_mean
    assert same_std > 0


def test_kid_routes_agree_and_are_seeded():
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(50, 8)), rng.normal(0.2, 1.0, size=(40, 8))
    full = kid.kernel_inception_distance(a, b, num_subsets=7, subset_size=30, seed=3)
    per_subset = kid.kernel_inception_distance(a, b, num_subsets=7, subset_size=30, seed=3, full_gram_max_elements=0)
    np.testing.assert_allclose(full, per_subset, rtol=1e-10)
    assert kid.kernel_inception_distance(a, b, num_subsets=7, subset_size=30, seed=3) == full
    assert kid.kernel_inception_distance(a, b, num_subsets=7, subset_size=30, seed=4) != full


def test_kid_matches_a_direct_double_sum():
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    k = lambda x, y: (x @ y / 3 + 1) ** 3
    same = sum(k(a[i], a[j]) + k(b[i], b[j]) for i in range(6) for j in range(6) if i != j) / 30
    cross = sum(k(a[i], b[j]) for i in range(6) for j in range(6)) / 36
    mean, std = kid.kernel_inception_distance(a, b, num_subsets=3, subset_size=100)  # m = 6: every subset is all rows
    assert mean == pytest.approx(same - 2 * cross, rel=1e-10) and std == pytest.approx(0, abs=1e-10)


# ---------------------------------------------------------------- cache and folders


def test_statistics_cache_hit_and_miss(tmp_path, monkeypatch):
    calls = []

    def compute(seed):
        def run():
            calls.append(seed)
            return fid.Statistics.from_features(np.random.default_rng(seed).normal(size=(4, 3)))
        return run

    key = {"content": "abc", "resolution": 64, "protocol": "pytorch_fid", "num": 4, "weights": "6726825d"}
    first = fid.cached_statistics(key, compute(1), cache_dir=tmp_path)
    second = fid.cached_statistics(dict(reversed(list(key.items()))), compute(2), cache_dir=tmp_path)
    assert calls == [1]
    np.testing.assert_array_equal(first.sigma, second.sigma)
    assert fid.cache_path(key, tmp_path).is_file()
    fid.cached_statistics({**key, "num": 5}, compute(3), cache_dir=tmp_path)
    assert calls == [1, 3]
    monkeypatch.setenv("LKGAN_CACHE_DIR", str(tmp_path / "env"))
    fid.cached_statistics(key, compute(4))
    assert calls == [1, 3, 4] and (tmp_path / "env" / "fid_stats" / f"{fid.cache_key(key)}.npz").is_file()
    fid.cache_path(key).write_bytes(b"corrupt")
    recomputed = fid.cached_statistics(key, compute(5))
    assert calls == [1, 3, 4, 5] and fid.Statistics.load(fid.cache_path(key)).num == recomputed.num
    with pytest.raises(ValueError, match="plain JSON values"):
        fid.cached_statistics({"x": object()}, compute(6), cache_dir=tmp_path)


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_batches_read_recursively_skip_bad_files_and_check_sizes(tmp_path):
    rng = np.random.default_rng(14)
    images = rng.integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        _write_png(tmp_path / "set" / ("sub" if i % 2 else "") / f"{i}.png", image)
    (tmp_path / "set" / "broken.png").write_bytes(b"\x89PNG not really")
    batches = folder_batches.iterate_folder_batches(tmp_path / "set", batch_size=2)
    got = np.concatenate(list(batches))
    order = sorted(range(5), key=lambda i: ("sub/" if i % 2 else "") + f"{i}.png")
    np.testing.assert_array_equal(got, images[order])
    assert batches.num_images == 5 and batches.num_skipped == 1 and batches.skipped_files[0].endswith("broken.png")
    assert batches.image_shape == (8, 6)
    limited = folder_batches.iterate_folder_batches(tmp_path / "set", batch_size=2, max_images=3)
    assert sum(len(b) for b in limited) == 3
    _write_png(tmp_path / "set" / "z_big.png", np.zeros((9, 6, 3), np.uint8))
    with pytest.raises(ValueError, match=r"z_big\.png is 6x9 but .* is 6x8"):
        list(folder_batches.iterate_folder_batches(tmp_path / "set", batch_size=2))
    with pytest.raises(ValueError, match="does not exist"):
        folder_batches.iterate_folder_batches(tmp_path / "nothing", batch_size=2)


def test_folder_content_hash_tracks_names_and_bytes(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    _write_png(tmp_path / "a" / "x.png", image)
    base = fid.folder_content_hash(tmp_path / "a")
    assert fid.folder_content_hash(tmp_path / "a") == base and len(base) == 64
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    assert fid.folder_content_hash(tmp_path / "a") == base
    os.rename(tmp_path / "a" / "x.png", tmp_path / "a" / "y.png")
    renamed = fid.folder_content_hash(tmp_path / "a")
    assert renamed != base
    _write_png(tmp_path / "a" / "y.png", image + 1)
    assert fid.folder_content_hash(tmp_path / "a") not in (base, renamed)
