"""Training a learned attribute editor on a run's frozen generator (docs/design.md §14), through the harness.

Each step draws fresh latents ℓ from the run's EMA generator (eval mode) and a requested change δ
(B, A): each attribute is edited with probability ``edit.edit_probability`` by U(−m, m) standard
deviations, m = ``edit.delta_max``; the geometry attributes (head scale, rotation, x, y) only in a
share ``edit.geometry_probability`` of the samples. With ℓ' = editor(ℓ, δ), images x = G(ℓ), x' = G(ℓ'), the
training judge's standardised attributes Ĥ and the run's detector K (both frozen):

  L = w_attr · mean (Ĥ(x') − Ĥ(x) − δ)²                                   attribute (+ leakage)
    + λ_kp · mean |K(x') − K(x)|      over samples editing no geometry attribute
    + mapper:  w_cyc · d(f(f(ℓ, δ), −δ), ℓ) + w_id · d(f(ℓ, 0), ℓ) + w_nb · d(ℓ', ℓ)
    + matrix:  w_lasso · Σ group norms
    + w_adv · softplus(−D(x'))        with the run's own discriminator

d is the mean squared difference of flat latents divided by the latent's standard deviation.
λ_kp = ``edit.keypoint_weight`` × ‖∇_ℓ' L_attr‖ / ‖∇_ℓ' L_kp‖, measured once when training starts,
at ℓ' = ℓ plus a perturbation of ``edit.balance_perturbation`` standard deviations (at a zero-init
mapper both gradients of the L1 term vanish, so the balance cannot be taken at the editor's output);
it is kept in the state and logged as ``keypoint_weight``.

Outputs under ``RUN/editors/NAME/``: ``config.json`` (the edit section, attribute names, judge
standardisation and hash, generator step), ``checkpoints/``, ``metrics.jsonl`` and TensorBoard events.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import pathlib
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from lkgan_jax import checkpoint, parallel
from lkgan_jax.data.procedural import ATTRIBUTE_NAMES
from lkgan_jax.detection.inference import TrainedDetector, detect_keypoints, load_detector
from lkgan_jax.judge.weights import TrainedJudge, float_judge_outputs, load_judge
from lkgan_jax.latent_editing import losses
from lkgan_jax.latent_editing.editors import STANDARDISATION, DirectionMatrix, LatentMapper, flatten_latent, unflatten_offset
from lkgan_jax.models.latent import sample_noise
from lkgan_jax.models.sampling import TrainedGenerator, latent_from_noise, render
from lkgan_jax.train import harness, health
from lkgan_jax.train import losses as gan_losses
from lkgan_jax.utils import files
from lkgan_jax.workdir import CONFIG_FILE

EDITORS_DIR = "editors"
EDITOR_KINDS = ("mapper", "matrix")
GEOMETRY_ATTRIBUTES = ("head_scale", "rotation", "x", "y")  # edits of these may move the keypoints
# Fields of the edit section that define the editor's parameters; a resumed run must keep them.
ARCHITECTURE_FIELDS = ("editor", "attributes", "mapper_depth", "matrix_blocks")


class EditorState(flax.struct.PyTreeNode):
    """An editor's parameters, fixed latent statistics, optimiser and the balanced keypoint weight."""

    step: jax.Array
    key: jax.Array
    params: Any
    constants: Any  # {"latent_mean": (W,), "latent_std": (W,)}
    opt_state: optax.OptState
    keypoint_weight: jax.Array  # λ_kp, fixed at initialisation
    nonfinite_step: jax.Array


@dataclasses.dataclass(frozen=True)
class Frozen:
    """The frozen networks a step reads, passed as step inputs (replicated)."""

    generator: Any  # EMA variables
    judge: Any
    detector: Any
    discriminator: Any  # D's params, or None without the adversarial term


jax.tree_util.register_dataclass(Frozen, data_fields=["generator", "judge", "detector", "discriminator"], meta_fields=[])


def editor_dir(workdir: str | pathlib.Path, name: str) -> pathlib.Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"edit.name must be a plain folder name, got {name!r}")
    return pathlib.Path(workdir) / EDITORS_DIR / name


def attribute_indices(names: Any) -> tuple[int, ...]:
    """Attribute names (a tuple, or a comma-separated string) → their indices in ``ATTRIBUTE_NAMES``."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTRIBUTE_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown attribute {unknown[0] if unknown else '(none given)'!r}; known: {', '.join(ATTRIBUTE_NAMES)}")
    return tuple(ATTRIBUTE_NAMES.index(n) for n in names)


def generator_fingerprint(variables: Any) -> str:
    """SHA-256 of a generator's variables (leaves in tree order): tells one run's generator from another's."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(variables)):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def make_editor(edit_config: ml_collections.ConfigDict, num_attributes: int, num_parts: int, embed_dim: int):
    c = edit_config
    if c.editor == "mapper":
        if c.mapper_depth < 1:
            raise ValueError(f"edit.mapper_depth must be at least 1, got {c.mapper_depth}")
        return LatentMapper(num_attributes, num_parts, embed_dim, c.mapper_depth)
    if c.editor == "matrix":
        blocks = set(c.matrix_blocks.split(","))
        if not blocks or not blocks <= {"positions", "embeddings", "background"}:
            raise ValueError(f"edit.matrix_blocks must name positions, embeddings and/or background, got {c.matrix_blocks!r}")
        return DirectionMatrix(num_attributes, num_parts, embed_dim, "positions" in blocks, "embeddings" in blocks, "background" in blocks)
    raise ValueError(f"edit.editor must be one of {', '.join(EDITOR_KINDS)}, got {c.editor!r}")


def sample_delta(
    key: jax.Array, batch: int, geometry: jax.Array, probability: float, geometry_probability: float, delta_max: float
) -> jax.Array:
    """(B, A): each attribute edited with ``probability`` by U(−delta_max, delta_max), else 0.

    ``geometry`` (A,) bool marks the attributes that move the face; they are edited only in a share
    ``geometry_probability`` of the samples, so that the others keep the keypoint-preservation term.
    """
    k_on, k_value, k_geometry = jax.random.split(key, 3)
    shape = (batch, geometry.shape[0])
    on = jax.random.bernoulli(k_on, probability, shape)
    on &= ~geometry | jax.random.bernoulli(k_geometry, geometry_probability, (batch, 1))
    return jnp.where(on, jax.random.uniform(k_value, shape, minval=-delta_max, maxval=delta_max), 0.0)


@dataclasses.dataclass(frozen=True)
class EditorTrainer:
    config: ml_collections.ConfigDict  # the edit section
    mesh: Mesh
    editor: Any
    attributes: tuple[int, ...]
    abstract_state: Any
    state_shardings: Any
    init: Callable[[jax.Array, Frozen], EditorState]
    step: Callable[[EditorState, Frozen], tuple[EditorState, dict]]


def build_editor_trainer(
    edit_config: ml_collections.ConfigDict, generator: TrainedGenerator, judge: TrainedJudge, detector: TrainedDetector,
    discriminator: tuple[Any, Any] | None = None, devices=None,
) -> EditorTrainer:
    """The editor, its optimiser and the jitted init/step; ``discriminator`` is the run's (module, params)."""
    c = edit_config
    harness.Schedule.from_config(c, "edit")
    for name in ("batch_size", "delta_max", "lr", "num_statistics"):
        if c[name] <= 0:
            raise ValueError(f"edit.{name} must be positive, got {c[name]}")
    for name in ("edit_probability", "geometry_probability"):
        if not 0 <= c[name] <= 1:
            raise ValueError(f"edit.{name} must lie in [0, 1], got {c[name]}")
    if c.adversarial_weight > 0 and discriminator is None:
        raise ValueError("edit.adversarial_weight > 0 needs the run's discriminator")
    mesh = parallel.make_mesh(generator.config.mesh, devices)
    parallel.check_global_batch(c.batch_size, mesh, "edit.batch_size")
    attributes = attribute_indices(c.attributes)
    names = [ATTRIBUTE_NAMES[i] for i in attributes]
    geometry = jnp.asarray([n in GEOMETRY_ATTRIBUTES for n in names])
    g, k, d = generator.generator, generator.num_parts, generator.generator.embed_dim
    editor = make_editor(c, len(attributes), k, d)
    tx = optax.adam(c.lr, b1=c.beta1, b2=c.beta2)
    index = jnp.asarray(attributes)

    def judged(judge_vars, images):
        return float_judge_outputs(judge.judge, judge_vars, images).attributes[:, index]

    def detected(detector_vars, images):
        return detect_keypoints(detector.detector, detector_vars, images)

    def draw(key, frozen, batch):
        k_noise, k_delta = jax.random.split(key)
        latent = jax.lax.stop_gradient(latent_from_noise(g, frozen.generator, *sample_noise(k_noise, batch, g.z_dim)))
        return latent, sample_delta(k_delta, batch, geometry, c.edit_probability, c.geometry_probability, c.delta_max)

    def keypoint_sample_weight(delta):
        return 1.0 - jnp.any((delta != 0) & geometry, axis=-1).astype(jnp.float32)

    def init(key: jax.Array, frozen: Frozen) -> EditorState:
        init_key, stats_key, balance_key, run_key = jax.random.split(key, 4)
        stats_latent, _ = draw(stats_key, frozen, c.num_statistics)
        flat = flatten_latent(stats_latent)
        constants = {"latent_mean": jnp.mean(flat, axis=0), "latent_std": jnp.std(flat, axis=0) + 1e-6}
        latent, delta = draw(balance_key, frozen, c.batch_size)
        variables = editor.init(init_key, latent, delta)
        params = variables["params"]
        # λ_kp: gradient norms of the two terms w.r.t. a perturbed edited latent (module docstring).
        original = render(g, frozen.generator, latent)
        a0, kp0 = judged(frozen.judge, original), detected(frozen.detector, original)
        noise = jax.random.normal(jax.random.fold_in(balance_key, 1), flatten_latent(latent).shape)
        perturbation = noise * constants["latent_std"] * c.balance_perturbation

        def term(name, offset):
            images = render(g, frozen.generator, unflatten_offset(latent, offset))
            if name == "attribute":
                return losses.attribute_loss(judged(frozen.judge, images), a0, delta)
            return losses.keypoint_preservation_loss(detected(frozen.detector, images), kp0, jnp.ones(c.batch_size))

        ratio = losses.balanced_weight(jax.grad(functools.partial(term, "attribute"))(perturbation),
                                       jax.grad(functools.partial(term, "keypoint"))(perturbation))
        return EditorState(
            step=jnp.zeros((), jnp.int32),
            key=run_key,
            params=params,
            constants=constants,
            opt_state=tx.init(params),
            keypoint_weight=(c.keypoint_weight * c.attribute_weight * ratio).astype(jnp.float32),
            nonfinite_step=jnp.full((), -1, jnp.int32),
        )

    def step(state: EditorState, frozen: Frozen) -> tuple[EditorState, dict]:
        latent, delta = draw(jax.random.fold_in(state.key, state.step), frozen, c.batch_size)
        original = render(g, frozen.generator, latent)
        a0, kp0 = judged(frozen.judge, original), detected(frozen.detector, original)
        std = state.constants["latent_std"]
        constants = {STANDARDISATION: state.constants} if isinstance(editor, LatentMapper) else {}

        def apply(params, lat, dlt):
            return editor.apply({"params": params, **constants}, lat, dlt)

        def objective(params):
            edited = apply(params, latent, delta)
            images = render(g, frozen.generator, edited)
            terms = {"attribute": losses.attribute_loss(judged(frozen.judge, images), a0, delta)}
            total = c.attribute_weight * terms["attribute"]
            if c.keypoint_weight > 0:
                terms["keypoint"] = losses.keypoint_preservation_loss(detected(frozen.detector, images), kp0, keypoint_sample_weight(delta))
                total += state.keypoint_weight * terms["keypoint"]
            if isinstance(editor, LatentMapper):
                flat, flat_edited = flatten_latent(latent), flatten_latent(edited)
                terms["cycle"] = losses.latent_distance(flatten_latent(apply(params, edited, -delta)), flat, std)
                terms["identity"] = losses.latent_distance(flatten_latent(apply(params, latent, jnp.zeros_like(delta))), flat, std)
                terms["neighbourhood"] = losses.latent_distance(flat_edited, flat, std)
                total += c.cycle_weight * terms["cycle"] + c.identity_weight * terms["identity"]
                total += c.neighbourhood_weight * terms["neighbourhood"]
            elif c.group_lasso_weight > 0:
                terms["group_lasso"] = losses.group_lasso(editor.apply({"params": params}, method=DirectionMatrix.block_norms))
                total += c.group_lasso_weight * terms["group_lasso"]
            if c.adversarial_weight > 0:
                terms["adversarial"] = gan_losses.generator_loss(discriminator[0].apply({"params": frozen.discriminator}, images))
                total += c.adversarial_weight * terms["adversarial"]
            return total, terms

        (loss, terms), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        logged = health.is_logged(state.step, c.log_every, c.steps)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            nonfinite_step=health.mark_nonfinite(state.nonfinite_step, state.step, loss),
        )
        metrics = {"loss": loss, **terms, "keypoint_weight": state.keypoint_weight, **health.optimizer_norms("editor", grads, updates, logged)}
        return new_state, metrics

    replicated = parallel.replicated(mesh)
    frozen_example = Frozen(generator.variables, judge.variables, detector.variables, discriminator and discriminator[1])
    abstract = jax.eval_shape(init, jax.random.key(c.seed), frozen_example)
    shardings = jax.tree.map(lambda _: replicated, abstract)
    frozen_shardings = jax.tree.map(lambda _: replicated, frozen_example)
    jitted_step = jax.jit(step, in_shardings=(shardings, frozen_shardings), out_shardings=(shardings, replicated), donate_argnums=0)
    jitted_init = jax.jit(init, in_shardings=(None, frozen_shardings), out_shardings=shardings)
    return EditorTrainer(c, mesh, editor, attributes, abstract, shardings, jitted_init, jitted_step)


def editor_task(trainer: EditorTrainer, frozen: Frozen, directory: pathlib.Path, record: dict) -> harness.Task:
    """The editor as a harness task; ``record`` is what ``config.json`` keeps beside the edit section."""
    c = trainer.config
    frozen = parallel.replicate(frozen, trainer.mesh)
    return harness.Task(
        name="editor",
        directory=directory,
        mesh=trainer.mesh,
        schedule=harness.Schedule.from_config(c, "edit"),
        abstract_state=trainer.abstract_state,
        state_shardings=trainer.state_shardings,
        init_state=lambda: trainer.init(jax.random.key(c.seed), frozen),
        step=trainer.step,
        inputs=itertools.repeat((frozen,)),
        abstract_inputs=(frozen,),
        batch_size=c.batch_size,
        parameters=lambda state: {"editor": state.params},
        on_start=lambda latest: _write_editor_config(directory, c, record),
    )


def _write_editor_config(directory: pathlib.Path, edit_config: ml_collections.ConfigDict, record: dict) -> None:
    """Writes ``config.json``; refuses to resume with another editor, generator step or judge."""
    path = directory / CONFIG_FILE
    new = {"edit": json.loads(edit_config.to_json()), **record}
    if path.exists():
        old = json.loads(path.read_text())
        changed = [f"edit.{f}" for f in ARCHITECTURE_FIELDS if old["edit"].get(f) != new["edit"][f]]
        changed += [f for f in ("generator_step", "generator_fingerprint", "judge_sha256") if old.get(f) != new[f]]
        if changed:
            raise checkpoint.CheckpointMismatchError(
                f"{directory} holds an editor with another {', '.join(changed)}; delete it, rename it with edit.name, or keep the config"
            )
    directory.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        files.write_json(path, new)


def train_editor(workdir: str | pathlib.Path, run_config: ml_collections.ConfigDict) -> EditorState:
    """Trains (or resumes) the editor ``run_config.edit.name`` of the run in ``workdir``.

    The generator is the checkpoint the run's detector was trained on, so that K(G(ℓ)) means what the
    detector learned; the judge is ``edit.judge_weights``.
    """
    from lkgan_jax.pretrained import load_discriminator_params, load_generator

    c = run_config.edit
    directory = editor_dir(workdir, c.name)
    if not c.judge_weights:
        raise ValueError("edit.judge_weights is empty; train a judge with `lkgan judge train` and pass its judge.msgpack")
    judge = load_judge(c.judge_weights)
    detector, _, generator_step = load_detector(workdir)
    generator = load_generator(workdir, generator_step)
    discriminator = load_discriminator_params(workdir, generator_step) if c.adversarial_weight > 0 else None
    trainer = build_editor_trainer(c, generator, judge, detector, discriminator)
    record = {
        "attribute_names": [ATTRIBUTE_NAMES[i] for i in trainer.attributes],
        "attribute_mean": [float(judge.attribute_mean[i]) for i in trainer.attributes],
        "attribute_std": [float(judge.attribute_std[i]) for i in trainer.attributes],
        "generator_step": generator.step,
        "generator_fingerprint": generator_fingerprint(generator.variables),
        "detector_step": detector.step,
        "judge_sha256": judge.sha256,
    }
    frozen = Frozen(generator.variables, judge.variables, detector.variables, discriminator and discriminator[1])
    return harness.run(editor_task(trainer, frozen, directory, record))
