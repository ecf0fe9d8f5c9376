"""Edit recipes: a JSON list of operations (``lkgan edit --ops OPS.json``), validated, then applied.

Each entry is an object with ``"op"`` and its fields (positions are (x, y) in [-1, 1], docs/design.md §1;
the ops are described in docs/design.md §4):

  {"op": "move", "part": 2, "to": [0.1, -0.2]}          part: int or list; or "offset": [dx, dy]
  {"op": "swap_parts", "parts": [0, 1], "from_seed": 7}  part embeddings of another seed's image
  {"op": "swap_background", "from_seed": 9}
  {"op": "remove", "part": 3}                            int or list
  {"op": "add", "like": 2, "at": [0.3, -0.2]}            copy part 2 (embedding, τ) to a new position
  {"op": "scale_part", "part": 1, "scale": 1.5}          spatial extent ×1.5 (τ × 2.25)
  {"op": "transform", "scale": 1.1, "rotate_deg": 10, "translate": [0, 0]}   about the centroid
  {"op": "interpolate", "to_seed": 5, "what": "parts|positions|background|all", "steps": 8}
                                                         optional "parts": [...] for parts/positions;
                                                         optional "alpha": 0.4 (frames end there, default 1)
  {"op": "attribute", "set": {"mouth_open": 1.0, "hair_lightness": -0.5}, "editor": "mapper"}
                                                         a trained editor (`lkgan edit-train`) changes the
                                                         attributes by these many standard deviations

The whole recipe is checked before anything is rendered (part indices against the number of parts at
that point of the recipe, since ``add`` grows it); every error is one line naming the op.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.editing import ops
from lkgan_jax.models.latent import Latent

DEFAULT_EDITOR = "mapper"  # the editor an ``attribute`` op uses unless it names one (``edit.name``)
# op -> (required fields, optional fields with defaults)
SCHEMAS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "move": (("part",), {"to": None, "offset": None}),
    "swap_parts": (("parts", "from_seed"), {}),
    "swap_background": (("from_seed",), {}),
    "remove": (("part",), {}),
    "add": (("like", "at"), {}),
    "scale_part": (("part", "scale"), {}),
    "transform": ((), {"scale": 1.0, "rotate_deg": 0.0, "translate": [0.0, 0.0]}),
    "interpolate": (("to_seed",), {"what": "all", "steps": 8, "parts": None, "alpha": 1.0}),
    "attribute": (("set",), {"editor": DEFAULT_EDITOR}),
}
MAX_INTERPOLATION_STEPS = 1000


class RecipeError(ValueError):
    """A malformed recipe; the message is one line naming the op."""


@dataclasses.dataclass(frozen=True)
class Operation:
    """One validated entry: ``position`` (1-based in the file), ``name`` and its fields (defaults filled)."""

    position: int
    name: str
    fields: dict[str, Any]

    @property
    def label(self) -> str:
        return f"op {self.position} ({self.name!r})"

    @property
    def caption(self) -> str:
        """A short label for pictures, e.g. ``interpolate positions``."""
        return f"{self.name} {self.fields['what']}" if self.name == "interpolate" else self.name

    def to_json(self) -> dict[str, Any]:
        """The entry as it would appear in an ops.json (fields normalised, unset optional ones left out).

        ``parse_operation(op.to_json(), ...)`` gives back an operation with the same fields.
        """
        required, optional = SCHEMAS[self.name]
        entry = {"op": self.name}
        for key in (*required, *optional):
            value = self.fields.get(key)
            if key in ("part", "parts", "to", "offset") and isinstance(value, list) and len(value) == 1:
                value = value[0]  # one part or one point: written as in the examples above
            if value is not None:
                entry[key] = value
        return entry


def parse_recipe(text: str, num_parts: int, trained_parts: int | None = None, source: str = "OPS.json") -> list[Operation]:
    """Parses and validates a recipe for a latent with ``num_parts`` parts; ``RecipeError`` if bad.

    ``trained_parts`` (default ``num_parts``) is the K of the latents of other seeds the recipe reads.
    """
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecipeError(f"{source}: malformed JSON (line {error.lineno} column {error.colno}: {error.msg})") from None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise RecipeError(f"{source}: expected a non-empty JSON list of operations")
    operations, trained_parts = [], num_parts if trained_parts is None else trained_parts
    for position, entry in enumerate(entries, start=1):
        operations.append(parse_operation(entry, num_parts, trained_parts, position, source))
        num_parts = parts_after(operations[-1], num_parts)
    return operations


def parse_operation(
    entry: Any, num_parts: int, trained_parts: int | None = None, position: int = 1, source: str = "OPS.json"
) -> Operation:
    """Validates one decoded entry (a dict) for a latent with ``num_parts`` parts; ``RecipeError`` if bad.

    The checks of ``parse_recipe`` for the op at ``position`` of a recipe (messages name it likewise).
    """
    operation = _parse_entry(entry, position, source)
    _check_against_parts(operation, num_parts, num_parts if trained_parts is None else trained_parts, source)
    return operation


def parts_after(op: Operation, num_parts: int) -> int:
    """The number of parts after ``op`` on a latent with ``num_parts`` (``add`` grows it by one)."""
    return num_parts + 1 if op.name == "add" else num_parts


def _parse_entry(entry: Any, position: int, source: str) -> Operation:
    where = f"{source} op {position}"
    if not isinstance(entry, dict) or "op" not in entry:
        raise RecipeError(f'{where}: expected an object with an "op" field, got {json.dumps(entry)[:80]}')
    name = entry["op"]
    if name not in SCHEMAS:
        raise RecipeError(f"{where} ({name!r}): unknown op; expected one of {', '.join(SCHEMAS)}")
    where = f"{where} ({name!r})"
    required, optional = SCHEMAS[name]
    missing = [k for k in required if k not in entry]
    if missing:
        raise RecipeError(f"{where}: missing field {', '.join(missing)}")
    unknown = sorted(set(entry) - set(required) - set(optional) - {"op"})
    if unknown:
        raise RecipeError(f"{where}: unknown field {', '.join(unknown)}")
    fields = {**optional, **{k: v for k, v in entry.items() if k != "op"}}
    try:
        _check_types(name, fields)
    except ValueError as error:
        raise RecipeError(f"{where}: {error}") from None
    return Operation(position, name, fields)


def _part_list(value: Any, field: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{field} must be an int or a non-empty list of ints, got {json.dumps(value)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{field} repeats a part: {values}")
    return values


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {json.dumps(value)}")
    return float(value)


def _point(value: Any, field: str) -> list[float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{field} must be [x, y], got {json.dumps(value)}")
    return [_number(v, field) for v in value]


def _seed(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ValueError(f"{field} must be an integer seed in 0..{2**32 - 1}, got {json.dumps(value)}")
    return value


def _check_types(name: str, f: dict[str, Any]) -> None:
    """Normalises ``f`` in place (parts to lists, numbers to floats); ValueError on a bad value."""
    for key in ("part", "parts"):
        if f.get(key) is not None:
            f[key] = _part_list(f[key], key)
    for key in ("from_seed", "to_seed"):
        if key in f:
            f[key] = _seed(f[key], key)
    if name == "move":
        if (f["to"] is None) == (f["offset"] is None):
            raise ValueError('give exactly one of "to" (absolute position) or "offset"')
        key = "to" if f["to"] is not None else "offset"
        value = f[key]
        points = value if value and isinstance(value[0], list) else [value]
        f[key] = [_point(p, key) for p in points]
        if len(f[key]) not in (1, len(f["part"])):
            raise ValueError(f"{key} gives {len(f[key])} positions for {len(f['part'])} parts")
    elif name == "add":
        if not isinstance(f["like"], int) or isinstance(f["like"], bool):
            raise ValueError(f"like must be a part index, got {json.dumps(f['like'])}")
        f["at"] = _point(f["at"], "at")
    elif name == "scale_part":
        f["scale"] = _number(f["scale"], "scale")
        if f["scale"] <= 0:
            raise ValueError(f"scale must be positive, got {f['scale']}")
    elif name == "transform":
        f["scale"] = _number(f["scale"], "scale")
        f["rotate_deg"] = _number(f["rotate_deg"], "rotate_deg")
        f["translate"] = _point(f["translate"], "translate")
    elif name == "attribute":
        if not isinstance(f["set"], dict) or not f["set"]:
            raise ValueError(f'set must be a non-empty object of attribute changes, got {json.dumps(f["set"])}')
        f["set"] = {str(k): _number(v, f"set.{k}") for k, v in f["set"].items()}
        if not isinstance(f["editor"], str) or not f["editor"]:
            raise ValueError(f"editor must be the name of a trained editor, got {json.dumps(f['editor'])}")
    elif name == "interpolate":
        if f["what"] not in ops.INTERPOLATION_TARGETS:
            raise ValueError(f"what must be one of {'|'.join(ops.INTERPOLATION_TARGETS)}, got {json.dumps(f['what'])}")
        steps = f["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_INTERPOLATION_STEPS:
            raise ValueError(f"steps must be an integer in 2..{MAX_INTERPOLATION_STEPS}, got {json.dumps(steps)}")
        if f["parts"] is not None and f["what"] not in ("parts", "positions"):
            raise ValueError('"parts" applies only to what=parts or what=positions')
        f["alpha"] = _number(f["alpha"], "alpha")


def _check_against_parts(op: Operation, num_parts: int, trained_parts: int, source: str) -> None:
    """Checks part indices against the K at this point of the recipe.

    Ops that read another seed's parts also need the parts there (it has the ``trained_parts``).
    """
    f = op.fields
    indices = f.get("part") or f.get("parts") or ([f["like"]] if op.name == "add" else [])
    reads_seed_parts = op.name == "swap_parts" or (op.name == "interpolate" and f["what"] != "background")
    limit = min(num_parts, trained_parts) if reads_seed_parts else num_parts
    if indices:
        try:
            ops.check_parts(indices, limit)
        except ValueError as error:
            raise RecipeError(f"{source} {op.label}: {error}") from None
    if op.name == "attribute" and num_parts != trained_parts:
        raise RecipeError(
            f"{source} {op.label}: an editor edits latents of the trained {trained_parts} parts; "
            f"this latent has {num_parts} at this point of the recipe"
        )
    if reads_seed_parts and op.name == "interpolate" and f["parts"] is None and num_parts != trained_parts:
        raise RecipeError(
            f"{source} {op.label}: the edited latent has {num_parts} parts and seed {f['to_seed']} has {trained_parts}; "
            'list the "parts" to interpolate'
        )


def apply_operation(
    op: Operation, latent: Latent, latent_of_seed: Callable[[int], Latent], editor_of: Callable[[str], Any] | None = None
) -> Latent:
    """Applies ``op`` to ``latent`` (batch 1); returns its frames as a batch (1, or ``steps`` for interpolate).

    The last frame is the latent after the op. ``latent_of_seed(s)`` gives the latent of seed s
    (batch 1, the trained number of parts). An interpolation's frames sit at α = linspace(0, alpha, steps).
    ``editor_of(name)`` gives a trained editor (``latent_editing.inference.TrainedEditor``) for ``attribute``.
    """
    f = op.fields
    try:
        if op.name == "attribute":
            if editor_of is None:
                raise ValueError("attribute edits need a run with trained editors")
            editor = editor_of(f["editor"])
            return editor.apply(latent, editor.delta(f["set"], batch=latent.keypoints.shape[0]))
        if op.name == "move":
            key = "to" if f["to"] is not None else "offset"
            return ops.move(latent, f["part"], **{key: np.asarray(f[key], np.float32)})
        if op.name == "swap_parts":
            return ops.swap_parts(latent, latent_of_seed(f["from_seed"]), f["parts"])
        if op.name == "swap_background":
            return ops.swap_background(latent, latent_of_seed(f["from_seed"]))
        if op.name == "remove":
            return ops.remove_part(latent, f["part"])
        if op.name == "add":
            return ops.add_part(latent, f["like"], np.asarray(f["at"], np.float32))
        if op.name == "scale_part":
            return ops.scale_part(latent, f["part"], f["scale"])
        if op.name == "transform":
            return ops.transform(latent, scale=f["scale"], rotate_deg=f["rotate_deg"], translate=f["translate"])
        if op.name == "interpolate":
            alphas = np.linspace(0.0, f["alpha"], f["steps"], dtype=np.float32)
            frames = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(alphas),) + x.shape[1:]), latent)
            return ops.interpolate(frames, latent_of_seed(f["to_seed"]), alphas, f["what"], f["parts"])
    except ValueError as error:
        raise RecipeError(f"{op.label}: {error}") from None
    raise RecipeError(f"{op.label}: unknown op")
