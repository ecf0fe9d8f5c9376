"""Tests for lkgan_jax.utils.visualize: keypoint overlays, grids, PNG writing."""

import numpy as np
import pytest
from PIL import Image

from lkgan_jax.conventions import pixel_to_normalized
from lkgan_jax.utils import visualize

SIZE = 64


def _blank(batch: int = 1, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    return np.zeros((batch, height, width, 3), np.uint8)


def test_part_colors_distinct_and_deterministic():
    colors = visualize.part_colors(30)
    assert colors.shape == (30, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 30
    np.testing.assert_array_equal(visualize.part_colors(5), colors[:5])
    np.testing.assert_array_equal(visualize.part_colors(0).shape, (0, 3))


def test_keypoint_drawn_at_column_x_row_y():
    column, row = 50, 10  # asymmetric: a swapped x/y would land at (row 50, column 10)
    keypoints = pixel_to_normalized(np.array([[[column, row]]], np.float32), SIZE)
    drawn = visualize.draw_keypoints(_blank(), keypoints)
    color = visualize.part_colors(1)[0]
    np.testing.assert_array_equal(drawn[0, row, column], color)
    np.testing.assert_array_equal(drawn[0, column, row], 0)
    assert drawn[0, row, column - int(visualize.default_radius(SIZE)) - 2].sum() == 0  # disc is local


def test_each_part_gets_its_colour_and_mask_hides_parts():
    pixels = np.array([[[10, 10], [30, 40], [50, 20]]], np.float32)
    keypoints = pixel_to_normalized(pixels, SIZE)
    mask = np.array([[True, False, True]])
    drawn = visualize.draw_keypoints(_blank(), keypoints, mask=mask)
    colors = visualize.part_colors(3)
    np.testing.assert_array_equal(drawn[0, 10, 10], colors[0])
    np.testing.assert_array_equal(drawn[0, 40, 30], 0)
    np.testing.assert_array_equal(drawn[0, 20, 50], colors[2])


def test_outline_is_dark_and_outside_keypoints_are_clipped():
    keypoints = np.array([[[0.0, 0.0], [3.0, -5.0], [np.nan, 0.2]]], np.float32)
    background = np.full((1, SIZE, SIZE, 3), 255, np.uint8)
    drawn = visualize.draw_keypoints(background, keypoints, radius=4.0)
    centre = (SIZE - 1) // 2
    edge = drawn[0, centre, centre + 4]  # ~radius from the (between-pixel) centre: the outline
    assert edge.max() < 200
    assert drawn.shape == background.shape and drawn.dtype == np.uint8


def test_non_square_images_map_x_with_width():
    height, width = 20, 60
    pixels = np.array([[[55, 5]]], np.float32)
    keypoints = np.stack(
        [pixel_to_normalized(pixels[..., 0], width), pixel_to_normalized(pixels[..., 1], height)], axis=-1
    )
    drawn = visualize.draw_keypoints(_blank(1, height, width), keypoints)
    np.testing.assert_array_equal(drawn[0, 5, 55], visualize.part_colors(1)[0])


def test_make_grid_shape_and_placement():
    images = np.stack([np.full((8, 10, 3), i * 20, np.uint8) for i in range(5)])
    grid = visualize.make_grid(images, ncols=3, pad=2)
    assert grid.shape == (2 * (8 + 2) + 2, 3 * (10 + 2) + 2, 3)
    np.testing.assert_array_equal(grid[2:10, 2:12], images[0])
    np.testing.assert_array_equal(grid[12:20, 14:24], images[4])  # row 1, column 1
    assert visualize.make_grid(images).shape == (2 * 10 + 2, 3 * 12 + 2, 3)  # ncols = ceil(sqrt(5))


def test_upscale_nearest_and_readable_factor():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = visualize.upscale_nearest(image, 4)
    assert big.shape == (8, 12, 3)
    np.testing.assert_array_equal(big[::4, ::4], image)
    assert visualize.readable_upscale_factor(32) == 4
    assert visualize.readable_upscale_factor(256) == 1


def test_save_png_round_trip_creates_parents(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = tmp_path / "a" / "b" / "grid.png"
    visualize.save_png(str(path), image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left behind


def test_save_gif_swings_back_and_forth(tmp_path):
    frames = np.stack([np.full((6, 5, 3), 40 * i, np.uint8) for i in range(4)])
    path = tmp_path / "interp.gif"
    visualize.save_gif(str(path), frames)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 + 2 and gif.size == (5, 6)  # 0 1 2 3 2 1, then it loops
        gif.seek(4)
        np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), frames[2])
    with pytest.raises(ValueError, match="uint8"):
        visualize.save_gif(str(path), frames.astype(np.float32))


def test_add_caption_appends_a_text_band():
    image = np.zeros((20, 60, 3), np.uint8)
    captioned = visualize.add_caption(image, "1 move")
    assert captioned.shape == (20 + visualize.CAPTION_HEIGHT, 60, 3)
    np.testing.assert_array_equal(captioned[:20], image)
    band = captioned[20:]
    assert band.min() < 128 and band.max() == visualize.GRID_PAD_VALUE  # dark text on white


def test_change_map_is_white_where_images_agree_and_darkens_with_the_largest_channel_difference():
    before = np.zeros((2, 3, 3), np.uint8)
    after = before.copy()
    after[0, 0] = (0, 32, 8)  # largest channel difference 32/255: 255 · (1 − 4 · 32/255) = 127
    after[1, 2, 2] = 200  # beyond a quarter of the range: black
    shade = visualize.change_map(before, after)
    assert shade.shape == (2, 3, 3) and shade.dtype == np.uint8
    expected = np.full((2, 3), 255, np.uint8)
    expected[0, 0], expected[1, 2] = 127, 0
    np.testing.assert_array_equal(shade, np.repeat(expected[..., None], 3, axis=-1))
    np.testing.assert_array_equal(visualize.change_map(after, before), shade)  # symmetric
    assert visualize.change_map(before, after, gain=1.0)[0, 0, 0] == 223  # 255 − 32
    with pytest.raises(ValueError, match="change_map needs two uint8 images of one shape"):
        visualize.change_map(before, after[:1])
