"""Tiny copies of the benchmark data sets in their exact on-disk formats, for tests (no download).

Each ``write_*`` builds a few small images (numpy + Pillow, the distributions' modes: JPEG RGB, a
grayscale JPEG for CUB, PNG for Taichi) and the annotation files with the distributions' names,
header lines, column order and 1-based ids, then returns a ``Fixture``: the root, the expected count
of every split, and per stored record what a round-trip test needs (source path, the landmarks that
preparation should keep, in source pixels with NaN where unknown, and the visibility it should store).
On every image one landmark (``MARKED``) is drawn as a bright square on a dark background, so a test
can check that the stored image and its landmark moved together. The Taichi joints are written as the
CSV that the preparer also accepts (the authors' pandas pickle only where pandas is installed).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
from PIL import Image

MARKED = 0  # the landmark drawn on every image
MARK_RADIUS = 2  # the mark covers (2 r + 1)^2 pixels


@dataclasses.dataclass
class Fixture:
    root: pathlib.Path
    counts: dict[str, int]
    # split -> list of (source image path, (L, 2) landmarks in source pixels (NaN unknown), (L,) visibility)
    samples: dict[str, list[tuple[pathlib.Path, np.ndarray, np.ndarray]]] = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)


def draw(width: int, height: int, mark: tuple[float, float] | None, seed: int, mode: str = "RGB") -> Image.Image:
    """A dark noisy image of ``width`` x ``height`` with a white square centred on pixel ``mark`` (x, y)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, (height, width, 3)).astype(np.uint8)
    if mark is not None:
        x, y = int(round(mark[0])), int(round(mark[1]))
        pixels[max(0, y - MARK_RADIUS):y + MARK_RADIUS + 1, max(0, x - MARK_RADIUS):x + MARK_RADIUS + 1] = 255
    image = Image.fromarray(pixels)
    return image.convert("L") if mode == "L" else image


def _write_lines(path: pathlib.Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


# --------------------------------------------------------------------------------------------- CelebA

CELEBA_LANDMARK_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                          "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
CELEBA_PARTITION = {i: 0 for i in range(1, 9)} | {9: 1, 10: 1, 11: 2, 12: 2}  # image number -> partition
MAFL_TRAIN = (1, 2, 3, 4, 5, 9)
MAFL_TEST = (6, 7, 11, 12)  # 6 and 7 are in CelebA's training partition: they leave `train`
ALIGNED_SIZE = (18, 22)  # CelebA's aligned faces are 178 x 218 (width x height); same shape, 10x smaller
# Wild photos: (width, height, face box (x, y, w, h)); the box of 4 and 9 covers < 30 % of the photo.
WILD = {1: (30, 24, (4, 3, 20, 18)), 2: (24, 30, (2, 4, 18, 20)), 3: (36, 28, (6, 4, 22, 20)),
        4: (40, 30, (10, 8, 10, 10)), 5: (28, 28, (4, 4, 20, 20)), 6: (32, 26, (5, 3, 20, 18)),
        7: (26, 34, (3, 6, 18, 22)), 8: (30, 30, (5, 5, 20, 20)), 9: (38, 30, (12, 10, 8, 8)),
        10: (30, 24, (4, 3, 20, 18)), 11: (34, 26, (6, 4, 20, 18)), 12: (24, 24, (2, 2, 18, 18))}


def _face_landmarks(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Five integer landmarks (pixels) well inside the image: eyes, nose, mouth corners."""
    fractions = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.72], [0.62, 0.72]])
    jitter = rng.integers(-1, 2, (5, 2))
    return np.rint(fractions * [width, height]) + jitter


def write_celeba(root: str | os.PathLike, layout: str = "official") -> Fixture:
    """CelebA (aligned and wild) plus MAFL lists.

    ``layout="official"``: ``CelebA/Img/img_align_celeba``, ``CelebA/Img/img_celeba``, ``CelebA/Anno/*``,
    ``CelebA/Eval/list_eval_partition.txt`` and a separate ``MAFL/`` folder. ``layout="zip"``: the
    papers' ``celeba.zip`` (``celeba/Img/img_align_celeba_hq``, ``celeba/Anno``, ``celeba/Eval``,
    ``celeba/MAFL``).
    """
    root = pathlib.Path(root)
    base = root / ("CelebA" if layout == "official" else "celeba")
    aligned_dir = base / "Img" / ("img_align_celeba" if layout == "official" else "img_align_celeba_hq")
    wild_dir = base / "Img" / "img_celeba"
    mafl_dir = root / "MAFL" if layout == "official" else base / "MAFL"
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in CELEBA_PARTITION]
    aligned_dir.mkdir(parents=True, exist_ok=True)
    wild_dir.mkdir(parents=True, exist_ok=True)
    aligned, wild = {}, {}
    for number, name in zip(CELEBA_PARTITION, names):
        points = _face_landmarks(*ALIGNED_SIZE, rng)
        aligned[number] = points
        draw(*ALIGNED_SIZE, points[MARKED], seed=number).save(aligned_dir / name, quality=95)
        width, height, _ = WILD[number]
        points = _face_landmarks(width, height, rng)
        wild[number] = points
        draw(width, height, points[MARKED], seed=100 + number).save(wild_dir / name, quality=95)

    def landmark_lines(points_by_number: dict[int, np.ndarray]) -> list[str]:
        return [str(len(names)), CELEBA_LANDMARK_HEADER] + [
            f"{name} " + " ".join(f"{int(v):4d}" for v in points_by_number[n].reshape(-1)) for n, name in zip(CELEBA_PARTITION, names)]

    _write_lines(base / "Anno" / "list_landmarks_align_celeba.txt", landmark_lines(aligned))
    _write_lines(base / "Anno" / "list_landmarks_celeba.txt", landmark_lines(wild))
    _write_lines(base / "Anno" / "list_bbox_celeba.txt", [str(len(names)), "image_id x_1 y_1 width height"] + [
        f"{name} {WILD[n][2][0]:5d} {WILD[n][2][1]:4d} {WILD[n][2][2]:4d} {WILD[n][2][3]:4d}" for n, name in zip(CELEBA_PARTITION, names)])
    _write_lines(base / "Eval" / "list_eval_partition.txt", [f"{name} {CELEBA_PARTITION[n]}" for n, name in zip(CELEBA_PARTITION, names)])
    _write_lines(mafl_dir / "training.txt", [f"{n:06d}.jpg" for n in MAFL_TRAIN])
    _write_lines(mafl_dir / "testing.txt", [f"{n:06d}.jpg" for n in MAFL_TEST])

    train = [n for n, p in CELEBA_PARTITION.items() if p == 0 and n not in MAFL_TEST]
    members = {"train": train, "mafl_train": list(MAFL_TRAIN), "mafl_test": list(MAFL_TEST)}
    small = {n for n, (w, h, box) in WILD.items() if box[2] * box[3] < 0.3 * w * h}

    def samples(directory: pathlib.Path, points: dict[int, np.ndarray], keep=lambda n: True):
        return {split: [(directory / f"{n:06d}.jpg", points[n], np.ones(5, np.float32)) for n in numbers if keep(n)]
                for split, numbers in members.items()}

    aligned_samples = samples(aligned_dir, aligned)
    wild_samples = samples(wild_dir, wild, keep=lambda n: n not in small)
    return Fixture(root, {s: len(v) for s, v in aligned_samples.items()}, aligned_samples,
                   extra={"wild_counts": {s: len(v) for s, v in wild_samples.items()}, "wild_samples": wild_samples,
                          "small_faces": sorted(small), "annotations": base / "Anno",
                          "partition": base / "Eval" / "list_eval_partition.txt",
                          "mafl_dir": mafl_dir, "aligned_dir": aligned_dir, "wild_dir": wild_dir})


# --------------------------------------------------------------------------------------------- CUB

CUB_CLASSES = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross", 3: "003.Sooty_Albatross",
               4: "004.Groove_billed_Ani"}
CUB_PART_NAMES = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing",
                  "nape", "right eye", "right leg", "right wing", "tail", "throat")
# image id -> (class, is_training_image, width, height); image 5 is grayscale (CUB holds a few).
CUB_IMAGES = {1: (1, 1, 37, 29), 2: (1, 1, 40, 34), 3: (1, 0, 33, 35), 4: (2, 1, 36, 30), 5: (2, 0, 34, 26),
              6: (3, 1, 30, 38), 7: (3, 0, 39, 33), 8: (4, 1, 35, 35), 9: (4, 1, 32, 24), 10: (4, 0, 38, 31)}
CUB_HIDDEN = (3, 9)  # parts (1-based ids) invisible in every image (x = y = 0, visible 0)
CUB_TRIMMED = 14  # part id placed in the trimmed-off first column: visible in the file, invisible after preparation


def write_cub(root: str | os.PathLike) -> Fixture:
    """``CUB_200_2011/`` with images.txt, train_test_split.txt, image_class_labels.txt, bounding_boxes.txt,
    parts/parts.txt, parts/part_locs.txt and images/<class>/<name>.jpg."""
    base = pathlib.Path(root) / "CUB_200_2011"
    rng = np.random.default_rng(1)
    image_lines, split_lines, class_lines, box_lines, part_lines = [], [], [], [], []
    samples: dict[str, list] = {"train": [], "test": [], "train_three": [], "test_001": [], "test_002": [], "test_003": []}
    boxes = {}
    for image_id, (class_id, is_train, width, height) in CUB_IMAGES.items():
        relative = f"{CUB_CLASSES[class_id]}/{CUB_CLASSES[class_id].split('.')[1]}_{image_id:04d}_{100 + image_id}.jpg"
        box = (float(rng.integers(2, 6)), float(rng.integers(2, 6)),
               float(width - rng.integers(8, 12)), float(height - rng.integers(8, 12)))
        boxes[image_id] = box
        points = np.column_stack([rng.uniform(box[0] + 2, box[0] + box[2] - 2, 15), rng.uniform(box[1] + 2, box[1] + box[3] - 2, 15)])
        points[MARKED] = (box[0] + box[2] / 2, box[1] + box[3] / 2)  # the drawn part: the box centre, never trimmed
        points = np.round(points, 1)
        visible = np.ones(15, np.float32)
        for hidden in CUB_HIDDEN:
            points[hidden - 1], visible[hidden - 1] = 0.0, 0.0
        if width % 16 >= 2:  # a visible part in the first column, which the trim to a multiple of 16 removes
            points[CUB_TRIMMED - 1] = (0.0, points[CUB_TRIMMED - 1, 1])
        path = base / "images" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(width, height, points[MARKED], seed=200 + image_id, mode="L" if image_id == 5 else "RGB").save(path, quality=95)
        image_lines.append(f"{image_id} {relative}")
        split_lines.append(f"{image_id} {is_train}")
        class_lines.append(f"{image_id} {class_id}")
        box_lines.append(f"{image_id} {box[0]:.1f} {box[1]:.1f} {box[2]:.1f} {box[3]:.1f}")
        part_lines += [f"{image_id} {p + 1} {points[p, 0]:.1f} {points[p, 1]:.1f} {int(visible[p])}" for p in range(15)]
        # What preparation should keep visible: the authors trim each side to a multiple of 16 pixels
        # (the remainder split evenly, the odd pixel at the right/bottom) and drop parts that fall outside.
        shifted = points - [(width % 16) // 2, (height % 16) // 2]
        inside = (shifted >= 0).all(axis=1) & (shifted[:, 0] < width - width % 16) & (shifted[:, 1] < height - height % 16)
        stored = np.where(inside, visible, 0.0).astype(np.float32)
        sample = (path, np.where(stored[:, None] > 0, points, np.nan), stored)
        samples["train" if is_train else "test"].append(sample)
        if class_id <= 3:
            samples["train_three" if is_train else f"test_{class_id:03d}"].append(sample)
    _write_lines(base / "images.txt", image_lines)
    _write_lines(base / "train_test_split.txt", split_lines)
    _write_lines(base / "image_class_labels.txt", class_lines)
    _write_lines(base / "bounding_boxes.txt", box_lines)
    _write_lines(base / "classes.txt", [f"{c} {name}" for c, name in CUB_CLASSES.items()])
    _write_lines(base / "parts" / "parts.txt", [f"{i + 1} {name}" for i, name in enumerate(CUB_PART_NAMES)])
    _write_lines(base / "parts" / "part_locs.txt", part_lines)
    return Fixture(pathlib.Path(root), {s: len(v) for s, v in samples.items()}, samples, extra={"boxes": boxes, "base": base})


# --------------------------------------------------------------------------------------------- Taichi

TAICHI_VIDEOS = {"A1aFXmb4Eic#000123#000456.mp4": 3, "Bb2gYnc5Fjd#000010#000200.mp4": 2}  # video folder -> frames
TAICHI_EVAL_SIZE = 32  # the real evaluation frames are 256 x 256
TAICHI_EVAL = {"train": 4, "test": 3}


def write_taichi(root: str | os.PathLike, pickle: bool = False) -> Fixture:
    """``taichi/train/<video>/<frame>.png``, ``taichi/eval_images/taichi-256/{train,test}/*.png`` and the
    joints as ``taichi/landmark/taichi_{train,test}_gt.csv`` (or the authors' pandas ``.pkl`` with ``pickle``)."""
    base = pathlib.Path(root) / "taichi"
    for video, frames in TAICHI_VIDEOS.items():
        for frame in range(frames):
            path = base / "train" / video / f"{frame:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw(24, 24, None, seed=frame).save(path)
    rng = np.random.default_rng(2)
    samples = {"train": [], "regression_train": [], "test": []}
    for part, count in TAICHI_EVAL.items():
        rows = []
        for index in range(count):
            name = f"{part}_{index:03d}.png"
            joints = np.round(rng.uniform(4, TAICHI_EVAL_SIZE - 5, (18, 2)), 2)
            joints[[3 + index, 10]] = -1.0  # missing joints
            path = base / "eval_images" / "taichi-256" / part / name
            path.parent.mkdir(parents=True, exist_ok=True)
            draw(TAICHI_EVAL_SIZE, TAICHI_EVAL_SIZE, joints[MARKED], seed=300 + index).save(path)
            rows.append((name, joints))
            missing = joints == -1.0
            samples["regression_train" if part == "train" else "test"].append(
                (path, np.where(missing, np.nan, joints), (~missing.any(axis=1)).astype(np.float32)))
        table = base / "landmark" / f"taichi_{part}_gt"
        table.parent.mkdir(parents=True, exist_ok=True)
        if pickle:
            import pandas
            pandas.DataFrame({"file_name": [r[0] for r in rows], "value": [r[1] for r in rows]}).to_pickle(str(table) + ".pkl")
        else:
            header = "filename," + ",".join(f"x{i},y{i}" for i in range(18))
            _write_lines(table.with_suffix(".csv"),
                         [header] + [name + "," + ",".join(f"{v:g}" for v in joints.reshape(-1)) for name, joints in rows])
    counts = {"train": sum(TAICHI_VIDEOS.values()), "regression_train": TAICHI_EVAL["train"], "test": TAICHI_EVAL["test"]}
    return Fixture(pathlib.Path(root), counts, samples, extra={"base": base})


# --------------------------------------------------------------------------------------------- Human3.6M

H36M_SIZE = 16  # the release's frames are 128 x 128
# subject -> {sequence folder: frames}; "Eating" and "Smoking" are not among the six activities.
H36M_SEQUENCES = {1: {"Directions 1.54138969": 3, "Walking.55011271": 2, "Eating.54138969": 2},
                  5: {"Discussion 2.58860488": 2}, 6: {"Greeting.60457274": 2}, 7: {"Posing 1.54138969": 1},
                  8: {"Waiting 1.55011271": 2, "Smoking.55011271": 1}, 9: {"Walking 1.58860488": 1},
                  11: {"Directions.54138969": 2, "Posing.55011271": 3}}


def write_h36m(root: str | os.PathLike) -> Fixture:
    """``human_images/S<n>/{WithBackground,Landmarks,BackgroudMask}/<sequence>/<frame>.{jpg,mat,png}``;
    keypoints_2d are 32 x 2 (row, column) fractions in [0, 1]."""
    from scipy import io as scipy_io

    base = pathlib.Path(root) / "human_images"
    rng = np.random.default_rng(3)
    samples = {"train": [], "test": []}
    sequences = {"train": [], "test": []}
    for subject, subject_sequences in H36M_SEQUENCES.items():
        split = "test" if subject == 11 else "train"
        for sequence, frames in sorted(subject_sequences.items()):
            kept = not sequence.startswith(("Eating", "Smoking"))
            if kept:
                sequences[split].append((f"S{subject}", sequence, frames))
            for frame in range(1, frames + 1):
                name = f"{frame:06d}"
                fractions = np.round(rng.uniform(0.2, 0.8, (32, 2)), 4)  # (row, column)
                points = fractions[:, ::-1] * (H36M_SIZE - 1)  # (x, y) pixels on the pixel-centre grid
                for folder, suffix in (("WithBackground", ".jpg"), ("Landmarks", ".mat"), ("BackgroudMask", ".png")):
                    (base / f"S{subject}" / folder / sequence).mkdir(parents=True, exist_ok=True)
                image_path = base / f"S{subject}" / "WithBackground" / sequence / (name + ".jpg")
                draw(H36M_SIZE, H36M_SIZE, points[MARKED], seed=400 + frame).save(image_path, quality=95)
                scipy_io.savemat(str(base / f"S{subject}" / "Landmarks" / sequence / (name + ".mat")), {"keypoints_2d": fractions})
                mask = np.zeros((H36M_SIZE, H36M_SIZE), np.uint8)
                mask[2:-2, 3:-3] = 255
                Image.fromarray(mask).save(base / f"S{subject}" / "BackgroudMask" / sequence / (name + ".png"))
                if kept:
                    samples[split].append((image_path, points, np.ones(32, np.float32)))
    return Fixture(pathlib.Path(root), {s: len(v) for s, v in samples.items()}, samples, extra={"base": base, "sequences": sequences})
