"""pytorch-fid as an optional reference for parity tests and benchmarks (never used to compute metrics).

Needs ``torch`` and ``pytorch_fid`` (``pip install torch==2.13.0 && pip install --no-deps
torchvision==0.28.0 pytorch-fid==0.3.0``). The registry's torchvision 0.28.0 is a CUDA build whose
``import torchvision`` fails next to a CPU torch (its compiled ops cannot load), while pytorch-fid only
needs torchvision's pure-Python ``models``/``transforms``. ``import_pytorch_fid`` therefore puts a bare
``torchvision`` package object into ``sys.modules`` (its ``__init__`` never runs) before importing
pytorch-fid (docs/design.md §7.1).

Random weights (``save_random_weights``) use torchvision's key names and realistic scales (He-scaled
convs, BN γ ∈ [0.8, 1.2], β ~ N(0, 0.1), running mean ~ N(0, 0.1), running var ∈ [0.5, 2]); saved as
``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth`` pytorch-fid loads them without a
download (torch.hub does not check hashes by default).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import pathlib
import sys
import types
from typing import Any, Iterator

import numpy as np

from lkgan_jax.evaluation.inception_weights import WEIGHTS_FILENAME


def _install_torchvision_shim() -> None:
    if "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed (pip install --no-deps torchvision==0.28.0)")
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations)
    package.__version__ = importlib.metadata.version("torchvision")
    package.__spec__ = spec
    sys.modules["torchvision"] = package
    for name in ("torchvision.models", "torchvision.models.inception", "torchvision.transforms"):
        importlib.import_module(name)


def import_pytorch_fid() -> types.ModuleType:
    """``pytorch_fid.inception`` (and ``pytorch_fid.fid_score`` imported), via the torchvision shim."""
    import torch  # noqa: F401  (ImportError here means the reference is unavailable)

    _install_torchvision_shim()
    importlib.import_module("pytorch_fid.fid_score")
    return importlib.import_module("pytorch_fid.inception")


def random_state_dict(seed: int = 0) -> dict[str, Any]:
    """A torch state_dict (torchvision ``Inception3`` names, fc 1008) with random realistic values."""
    import torch

    _install_torchvision_shim()
    import torchvision.models

    skeleton = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in skeleton.state_dict().items():
        shape, kind = tuple(value.shape), key.rsplit(".", 1)[-1]
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
            continue
        if ".conv." in key or key == "fc.weight":
            array = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif kind == "weight":
            array = rng.uniform(0.8, 1.2, shape)
        elif kind in ("bias", "running_mean"):
            array = rng.normal(0.0, 0.1, shape)
        elif kind == "running_var":
            array = rng.uniform(0.5, 2.0, shape)
        else:
            raise ValueError(f"unexpected key {key} in torchvision's Inception3")
        state[key] = torch.from_numpy(array.astype(np.float32))
    return state


def save_random_weights(torch_home: str | os.PathLike, seed: int = 0) -> pathlib.Path:
    """Writes random weights (``torch.save``) where pytorch-fid looks under ``torch_home``; returns the path."""
    import torch

    path = pathlib.Path(torch_home) / "hub" / "checkpoints" / WEIGHTS_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_state_dict(seed), path)
    return path


@contextlib.contextmanager
def _torch_home(torch_home: str | os.PathLike) -> Iterator[None]:
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = os.fspath(torch_home)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = previous


def pytorch_fid_model(torch_home: str | os.PathLike, taps: bool = False) -> Any:
    """pytorch-fid's ``InceptionV3`` (resize_input, normalize_input) in eval mode, weights from ``torch_home``.

    ``torch_home`` must hold ``hub/checkpoints/pt_inception-2015-12-05-6726825d.pth`` (nothing is
    downloaded); with ``taps`` it returns all four blocks (64, 192, 768, 2048).
    """
    module = import_pytorch_fid()
    path = pathlib.Path(torch_home) / "hub" / "checkpoints" / WEIGHTS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pytorch-fid would try to download it")
    with _torch_home(torch_home):
        blocks = (0, 1, 2, 3) if taps else (3,)
        model = module.InceptionV3(blocks, resize_input=True, normalize_input=True)
    return model.eval()


def torch_features(model: Any, images: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
    """pytorch-fid's activations of uint8 (N, H, W, 3) images, as float64 {"64"?, ..., "2048"} (N, D).

    Pre-processing is pytorch-fid's (``ToTensor`` → [0, 1], then the model's resize and 2x − 1); feature
    maps of the taps are spatially averaged as in ``get_activations``.
    """
    import torch

    outputs: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start: start + batch_size]))
            x = batch.permute(0, 3, 1, 2).float().div(255.0)
            for output in model(x):
                pooled = output.mean(dim=(2, 3)).double().numpy()
                outputs.setdefault(str(pooled.shape[1]), []).append(pooled)
    return {key: np.concatenate(value) for key, value in outputs.items()}
