"""What a studio page exports, and the one folder it may write to.

An export is four files, built in memory from the session:

  image.png      the current image at native resolution (the pixels of ``lkgan edit``'s last NN_<op>.png)
  keypoints.png  the same image upscaled with its keypoints drawn (the sample grids' palette)
  latent.npz     the current latent as a ``latents.npz`` (``lkgan edit --latents latent.npz --seed S`` reads it)
  ops.json       the committed ops: ``lkgan edit --seed S --ops ops.json`` reproduces image.png

``write_export`` puts them in a new subfolder ``EXPORT_DIR/NAME`` (NAME: letters, digits, ``_`` and ``-``).
Nothing is ever written elsewhere: names cannot hold separators or dots, an existing name (or a link
of that name) is refused, and the new folder must sit directly in the export folder once resolved.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re

import numpy as np
from PIL import Image

from lkgan_jax.editing.replay import latent_record
from lkgan_jax.studio.session import Session, StudioError
from lkgan_jax.utils import files, visualize

IMAGE_FILE, KEYPOINTS_FILE, LATENT_FILE, OPS_FILE = "image.png", "keypoints.png", "latent.npz", "ops.json"
EXPORT_FILES = (IMAGE_FILE, KEYPOINTS_FILE, LATENT_FILE, OPS_FILE)
EXPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_AUTOMATIC_NAMES = 10_000


def export_contents(session: Session, step: int) -> dict[str, bytes]:
    """The export files of ``session`` (generator checkpoint ``step``) as bytes, by file name."""
    latent = session.latent
    upscaled = visualize.upscale_nearest(session.image[None], visualize.readable_upscale_factor(session.image.shape[0]))
    overlay = visualize.draw_keypoints(upscaled, np.asarray(latent.keypoints), np.asarray(latent.mask))[0]
    arrays = io.BytesIO()
    np.savez(arrays, **latent_record(latent, session.seed, step))
    return {
        IMAGE_FILE: _png(session.image),
        KEYPOINTS_FILE: _png(overlay),
        LATENT_FILE: arrays.getvalue(),
        OPS_FILE: (json.dumps(session.ops_json(), indent=2) + "\n").encode(),
    }


def check_name(name: object) -> str:
    """``name`` if it is a valid export name, else a one-line ``StudioError``."""
    if not isinstance(name, str) or not EXPORT_NAME.fullmatch(name):
        shown = json.dumps(name)[:80]
        raise StudioError(f"export name {shown} must be 1-64 letters, digits, '_' or '-' (starting with a letter or digit)")
    return name


def automatic_name(export_dir: pathlib.Path, seed: int) -> str:
    """The first ``seed{S}_{NNN}`` not yet taken in ``export_dir``."""
    for number in range(1, MAX_AUTOMATIC_NAMES):
        name = f"seed{seed}_{number:03d}"
        if not os.path.lexists(export_dir / name):
            return name
    raise StudioError(f"no free export name for seed {seed} in {export_dir}; name the export", 409)


def write_export(export_dir: pathlib.Path, name: str, contents: dict[str, bytes]) -> pathlib.Path:
    """Writes ``contents`` into the new folder ``export_dir/name`` -> its path; one-line ``StudioError`` if refused."""
    name = check_name(name)
    try:
        root = files.output_directory(export_dir, "--export-dir").resolve()
    except ValueError as error:
        raise StudioError(str(error), 500) from None
    target = root / name
    try:
        target.mkdir()  # never follows or reuses an existing entry (file, folder or link)
    except FileExistsError:
        raise StudioError(f"export {name!r} already exists in {root}; choose another name", 409) from None
    if target.resolve().parent != root:
        target.rmdir()
        raise StudioError(f"export {name!r} would leave {root}", 400)
    for file_name, data in contents.items():
        if file_name not in EXPORT_FILES:
            raise StudioError(f"not an export file: {file_name!r}", 500)
        files.write_atomically(target / file_name, lambda file, data=data: file.write(data))
    return target


def _png(image: np.ndarray) -> bytes:
    """PNG bytes with the settings of ``visualize.save_png`` (so the files of ``lkgan edit`` match byte for byte)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
