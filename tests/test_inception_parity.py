"""Parity of the Flax FID-Inception pipeline with pytorch-fid itself (random weights, offline).

Skipped unless ``torch`` and ``pytorch_fid`` are installed (``pip install torch==2.13.0 && pip install
--no-deps torchvision==0.28.0 pytorch-fid==0.3.0``). pytorch-fid's InceptionV3 gets random weights saved
by ``torch.save`` in a temporary TORCH_HOME (no download); our torch-free reader loads the same file.
Tolerance: max |Δ| / max |ref| ≤ 1e-4, which each known porting mistake (BN ε, avg-pool padding count,
Mixed_7c pool, antialiased resize) exceeds by ≥ 100× (docs/design.md §7.1).
"""

import importlib.util
import warnings

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_fid")
if importlib.util.find_spec("torchvision") is None:  # importing it would fail on CPU torch (see torch_reference)
    pytest.skip("torchvision is not installed", allow_module_level=True)

import jax  # noqa: E402

from lkgan_jax.data import folder_batches  # noqa: E402
from lkgan_jax.evaluation import features as features_lib  # noqa: E402
from lkgan_jax.evaluation import fid, inception, inception_weights, preprocess, torch_reference  # noqa: E402

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


def _relative_error(ours, ref):
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch_home = tmp_path_factory.mktemp("torch_home")
    weights = torch_reference.save_random_weights(torch_home, seed=0)
    with pytest.warns(UserWarning, match="allow_unverified"):
        params, sha = inception_weights.load_inception_params(weights, allow_unverified=True)
    return dict(torch_home=torch_home, weights=weights, params=params, sha=sha,
                model=torch_reference.pytorch_fid_model(torch_home))


def test_reader_matches_torch_load_for_both_file_formats(setup, tmp_path):
    reference = torch.load(setup["weights"], map_location="cpu")
    ours = inception_weights.read_torch_state_dict(setup["weights"])
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(ours[key], value.numpy())
    legacy = tmp_path / "legacy.pth"  # torch < 1.6 format (as old weight files are)
    torch.save(reference, legacy, _use_new_zipfile_serialization=False)
    legacy_params = inception_weights.params_from_state_dict(inception_weights.read_torch_state_dict(legacy))
    for name, value in inception.flatten_params(setup["params"]).items():
        np.testing.assert_array_equal(inception.flatten_params(legacy_params)[name], value)
    written = tmp_path / "ours.pth"  # and torch reads what our writer writes
    inception_weights.write_torch_state_dict(written, inception_weights.state_dict_from_params(setup["params"]))
    reread = torch.load(written)
    for key, value in inception_weights.state_dict_from_params(setup["params"]).items():
        np.testing.assert_array_equal(reread[key].numpy(), value)


@pytest.mark.parametrize("size", [32, 299, 512])
def test_pool3_features_match_pytorch_fid(setup, size):
    images = np.random.default_rng(size).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    extractor = features_lib.FeatureExtractor(params=setup["params"], batch_size=2)
    ours = extractor.extract(images)
    ref = torch_reference.torch_features(setup["model"], images)["2048"]
    error = _relative_error(ours, ref)
    print(f"pool3 {size}x{size}: max|Δ|/max|ref| = {error:.2e}")
    assert error <= TOLERANCE
    assert _relative_error(ours[::-1], ref) > 100 * TOLERANCE  # the comparison can tell images apart


def test_all_taps_match_pytorch_fid(setup):
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    network = inception.FidInceptionV3(return_taps=True)
    ours = jax.jit(lambda p, x: network.apply({"params": p}, preprocess.preprocess(x)))(setup["params"], images)
    ref = torch_reference.torch_features(torch_reference.pytorch_fid_model(setup["torch_home"], taps=True), images)
    assert sorted(ref) == sorted(ours) == ["192", "2048", "64", "768"]
    for tap in ref:
        error = _relative_error(ours[tap], ref[tap])
        print(f"tap {tap} 64x64: max|Δ|/max|ref| = {error:.2e}")
        assert error <= TOLERANCE


def _reference_fid(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's calculate_frechet_distance; if its sqrtm fails (N < 2048), the eigvals route."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
        if np.isfinite(value):
            return value, "sqrtm"
    except (ValueError, TypeError):  # "Imaginary component"; SciPy >= 1.18 has no sqrtm(disp=...)
        pass
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    tr_sqrt = np.sqrt(eigenvalues).real.sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt), "eigvals"


def test_fid_between_two_folders_matches_pytorch_fid(setup, tmp_path):
    rng = np.random.default_rng(2)
    folders = []
    for name, low in (("a", 0), ("b", 60)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(low, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        folders.append(folder)
    extractor = features_lib.FeatureExtractor(params=setup["params"], batch_size=2)
    ours = [extractor.statistics(folder_batches.iterate_folder_batches(f, batch_size=4)) for f in folders]
    our_fid = fid.frechet_distance(*ours)

    from pytorch_fid.fid_score import calculate_activation_statistics

    files = [sorted(str(p) for p in f.glob("*.png")) for f in folders]
    ref_stats = [calculate_activation_statistics(fs, setup["model"], batch_size=4, dims=2048, device="cpu",
                                                 num_workers=0) for fs in files]
    ref_fid, route = _reference_fid(*ref_stats[0], *ref_stats[1])
    print(f"FID ours {our_fid:.8f} vs pytorch-fid ({route}) {ref_fid:.8f}: rel {abs(our_fid - ref_fid) / ref_fid:.2e}")
    assert our_fid > 0 and abs(our_fid - ref_fid) <= TOLERANCE * abs(ref_fid)
