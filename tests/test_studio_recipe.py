"""What the studio adds to the ops.json format: one-entry validation, entries written back as JSON, and
interpolations that stop at ``alpha`` (no trained run needed)."""

import json

import jax
import numpy as np
import pytest

from lkgan_jax.editing import ops
from lkgan_jax.editing.recipe import RecipeError, apply_operation, parse_operation, parse_recipe, parts_after
from lkgan_jax.models.latent import Latent
from lkgan_jax.studio.exports import check_name
from lkgan_jax.studio.session import StudioError

ENTRIES = [
    {"op": "move", "part": 2, "to": [0.1, -0.2]},
    {"op": "move", "part": [0, 1], "offset": [0.05, 0.0]},
    {"op": "move", "part": [0, 1], "to": [[0.05, 0.0], [0.1, 0.2]]},
    {"op": "swap_parts", "parts": [0, 1], "from_seed": 7},
    {"op": "swap_background", "from_seed": 9},
    {"op": "interpolate", "to_seed": 5},
    {"op": "remove", "part": 3},
    {"op": "add", "like": 2, "at": [0.3, -0.2]},
    {"op": "scale_part", "part": 1, "scale": 1.5},
    {"op": "transform", "scale": 1.1, "rotate_deg": 10},
    {"op": "interpolate", "to_seed": 5, "what": "parts", "parts": [0, 1], "steps": 4, "alpha": 0.5},
]


def _latent(seed: int, parts: int = 5) -> Latent:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return Latent.create(
        jax.random.uniform(k1, (1, parts, 2), minval=-0.7, maxval=0.7),
        jax.random.normal(k2, (1, parts, 4)),
        jax.random.normal(k3, (1, 4)),
        0.02,
    )


def test_entries_written_back_parse_to_the_same_ops():
    num_parts = 5
    for op in parse_recipe(json.dumps(ENTRIES), num_parts=num_parts):
        entry = op.to_json()
        assert list(entry)[0] == "op" and None not in entry.values()
        again = parse_operation(json.loads(json.dumps(entry)), num_parts, trained_parts=5)
        assert (again.name, again.fields) == (op.name, op.fields)
        num_parts = parts_after(op, num_parts)
    assert parse_recipe(json.dumps(ENTRIES[:1]), 5)[0].to_json() == ENTRIES[0]  # one part, one point: as written


def test_parse_operation_checks_one_entry_like_the_recipe():
    assert parts_after(parse_operation({"op": "add", "like": 0, "at": [0, 0]}, 5), 5) == 6
    with pytest.raises(RecipeError, match=r"^request op 4 \('move'\): part 5 out of range for a latent with 5 parts"):
        parse_operation({"op": "move", "part": 5, "to": [0, 0]}, 5, position=4, source="request")
    with pytest.raises(RecipeError, match="part 5 out of range"):  # another seed has the trained K (5) parts only
        parse_operation({"op": "swap_parts", "parts": 5, "from_seed": 1}, 6, trained_parts=5)
    with pytest.raises(RecipeError, match="alpha must be a finite number"):
        parse_operation({"op": "interpolate", "to_seed": 1, "alpha": "half"}, 5)


def test_interpolation_frames_stop_at_alpha():
    latent, target = _latent(0), _latent(1)
    op = parse_operation({"op": "interpolate", "to_seed": 1, "what": "background", "alpha": 0.4, "steps": 3}, 5)
    frames = apply_operation(op, latent, lambda seed: target)
    assert frames.keypoints.shape[0] == 3
    expected = ops.interpolate_background(latent, target, np.float32(0.4))
    np.testing.assert_array_equal(np.asarray(frames.background_embedding[-1:]), np.asarray(expected.background_embedding))
    np.testing.assert_array_equal(np.asarray(frames.background_embedding[0]), np.asarray(latent.background_embedding[0]))
    full = parse_operation({"op": "interpolate", "to_seed": 1, "what": "background", "steps": 3}, 5)  # default alpha 1
    np.testing.assert_allclose(apply_operation(full, latent, lambda seed: target).background_embedding[-1], target.background_embedding[0], atol=1e-6)


@pytest.mark.parametrize("name", ["../up", "a/b", "..", ".", ".hidden", "", "x" * 65, "a b", "a\\b", "ä", None, 3])
def test_export_names_cannot_leave_the_folder(name):
    with pytest.raises(StudioError, match="export name") as error:
        check_name(name)
    assert error.value.status == 400


def test_export_names_that_are_fine():
    for name in ("seed3_001", "My-edit", "0", "x" * 64):
        assert check_name(name) == name
