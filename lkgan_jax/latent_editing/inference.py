"""A trained attribute editor, ready to edit: ``load_editor(workdir, name)``.

    editor = load_editor("runs/default", "mapper")
    delta = editor.delta({"mouth_open": 1.0, "hair_lightness": -0.5}, batch=latent.keypoints.shape[0])
    edited = editor.apply(latent, delta)        # jit/vmap-able; latent (B, ...) of the trained K parts

Requested changes are in standard deviations of each attribute on real faces (the judge's
standardised units), within ±``edit.delta_max`` of the training range.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from lkgan_jax.latent_editing.editors import STANDARDISATION, LatentMapper
from lkgan_jax.latent_editing.train import EDITORS_DIR, editor_dir, generator_fingerprint, make_editor
from lkgan_jax.models.latent import Latent
from lkgan_jax.models.sampling import TrainedGenerator
from lkgan_jax.workdir import CONFIG_FILE, read_config


@dataclasses.dataclass(frozen=True)
class TrainedEditor:
    """An editor with its variables; ``apply(latent, delta (B, A)) → latent``."""

    editor: Any
    variables: Any
    config: ml_collections.ConfigDict  # the edit section it was trained with
    attribute_names: tuple[str, ...]
    attribute_std: tuple[float, ...]  # its unit per attribute: the training judge's standard deviation on real faces
    generator_step: int
    step: int

    def apply(self, latent: Latent, delta: jax.Array) -> Latent:
        return apply_editor(self.editor, self.variables, latent, delta)

    def delta(self, changes: Mapping[str, float], batch: int = 1) -> jax.Array:
        """{attribute: change in standard deviations} → δ (B, A); one-line errors for unknown names or ranges."""
        unknown = [n for n in changes if n not in self.attribute_names]
        if unknown:
            raise ValueError(f"this editor does not edit {unknown[0]!r}; it edits {', '.join(self.attribute_names)}")
        limit = self.config.delta_max
        for name, value in changes.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not -limit <= value <= limit:
                raise ValueError(f"attribute change {name}={value!r} must be a number within ±{limit} (the editor's training range)")
        row = jnp.asarray([float(changes.get(n, 0.0)) for n in self.attribute_names], jnp.float32)
        return jnp.broadcast_to(row, (batch, len(self.attribute_names)))


@functools.partial(jax.jit, static_argnums=0)
def apply_editor(editor: Any, variables: Any, latent: Latent, delta: jax.Array) -> Latent:
    return editor.apply(variables, latent, delta)


def available_editors(workdir: str | pathlib.Path) -> list[str]:
    directory = pathlib.Path(workdir) / EDITORS_DIR
    return sorted(p.name for p in directory.iterdir() if (p / CONFIG_FILE).exists()) if directory.is_dir() else []


def load_editor(workdir: str | pathlib.Path, name: str, generator: TrainedGenerator | None = None, step: int | None = None) -> TrainedEditor:
    """The editor ``name`` of the run in ``workdir`` (its latest checkpoint, or ``step``).

    With ``generator``, a one-line error unless the editor was trained on exactly that generator
    (the same step of the same run): an editor's directions mean nothing on another generator.
    """
    from lkgan_jax.pretrained import restore_state_parts

    directory = editor_dir(workdir, name)
    if not (directory / CONFIG_FILE).exists():
        known = available_editors(workdir)
        raise FileNotFoundError(
            f"no editor {name!r} in {pathlib.Path(workdir) / EDITORS_DIR} "
            f"({'trained editors: ' + ', '.join(known) if known else 'train one with `lkgan edit-train`'})"
        )
    saved = json.loads((directory / CONFIG_FILE).read_text())
    if generator is not None and (
        saved["generator_step"] != generator.step or saved["generator_fingerprint"] != generator_fingerprint(generator.variables)
    ):
        raise ValueError(
            f"editor {name!r} in {directory} was trained on another generator (step {saved['generator_step']} of the run it "
            f"was trained in), not on step {generator.step} of {workdir}; train one for this generator with `lkgan edit-train`"
        )
    config = ml_collections.ConfigDict(saved["edit"])
    model = read_config(workdir).model
    editor = make_editor(config, len(saved["attribute_names"]), model.num_keypoints, model.embed_dim)
    k, d = model.num_keypoints, model.embed_dim
    example = Latent.create(jnp.zeros((1, k, 2)), jnp.zeros((1, k, d)), jnp.zeros((1, d)), 1.0)
    abstract = jax.eval_shape(editor.init, jax.random.key(0), example, jnp.zeros((1, len(saved["attribute_names"]))))
    parts = {"params": abstract["params"]}
    if isinstance(editor, LatentMapper):
        parts["constants"] = abstract[STANDARDISATION]
    restored, step = restore_state_parts(directory, step, parts, f"editor {name!r}")
    variables = {"params": restored["params"]}
    if isinstance(editor, LatentMapper):
        variables[STANDARDISATION] = restored["constants"]
    return TrainedEditor(editor, variables, config, tuple(saved["attribute_names"]), tuple(saved["attribute_std"]),
                         saved["generator_step"], step)
