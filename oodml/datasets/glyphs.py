"""``glyphs``: the embedded dataset, generated offline from the fonts matplotlib ships.

Why it exists: a shift study needs classes that are *related in graded ways*, and a fresh machine
has no benchmark images and no network. Glyphs give exactly that: a class is one character,
its images are that character drawn in different typefaces with random geometric and stroke
jitter, and its superclass is its script or Unicode block (Latin, Greek, Cyrillic, Armenian,
Georgian, IPA, Canadian syllabics, arrows, mathematical operators, box drawing, geometric
shapes, Braille). Characters of one script share strokes and proportions; different scripts
share less. That is the structure the FID-graded split search exploits: moving whole blocks
of similar classes to one side raises the train→test shift, mixing them lowers it.

Recipe (deterministic from ``seed``):

* **Faces**: DejaVu Sans, Sans Mono, Serif and STIX General, each in regular, bold, italic and
  bold italic (16 faces); a character uses the faces that contain it (at least 4).
* **Classes**: for each superclass, characters (letters, symbols) that enough faces contain, in
  code-point order, skipping any character whose canonical drawing is nearly identical to a
  character already chosen (homoglyphs such as Latin ``A``, Greek ``Α`` and Cyrillic ``А`` would
  otherwise be indistinguishable classes); then ``classes_per_superclass`` of them, evenly spread
  over the block.
* **Images**: ``images_per_class`` drawings per character: faces cycled in a seeded order, the
  glyph centred at a fixed font size (so case and size differences survive), then a random
  rotation (±12°), scale (±15%), shear (±0.15), translation (±6%) and stroke change (thinner,
  unchanged or thicker), downsampled to ``image_size`` pixels, black on white, saved as PNG.
* **Standard split**: within each superclass the first half of its characters (by code point)
  is train, the rest test — a moderate shift that the search can make easier or harder.

The images are written once to ``<data root>/glyphs`` (``glyphs-<key>`` for non-default
settings) through a temporary folder renamed into place, with a ``glyphs.json`` manifest;
later calls only read the manifest. Default settings: 12 superclasses × 30 classes × 16 images
of 64×64 px (5,760 images), generated in a few seconds.

Example::

    from oodml.datasets import load_dataset
    ds = load_dataset("glyphs")
    print(ds.summary())   # 360 classes, 5760 images, 12 superclasses
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from oodml.datasets.base import ImageDataset, Item
from oodml.errors import BadInputError
from oodml.io import read_json, stable_hash, write_json
from oodml.paths import data_root
from oodml.progress import progress_bar

GLYPHS_VERSION = 1

#: Faces looked up in matplotlib's bundled fonts folder.
FACES = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
)  # fmt: skip

#: Superclass name -> code-point ranges (Unicode scripts / blocks).
SUPERCLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x41, 0x5B), (0x61, 0x7B)),
    "greek": ((0x391, 0x3CA),),
    "cyrillic": ((0x410, 0x450),),
    "armenian": ((0x531, 0x587),),
    "georgian": ((0x10D0, 0x10F1),),
    "ipa": ((0x250, 0x2B0),),
    "canadian_syllabics": ((0x1401, 0x1677),),
    "arrows": ((0x2190, 0x2200),),
    "math_operators": ((0x2200, 0x2300),),
    "box_drawing": ((0x2500, 0x2580),),
    "geometric_shapes": ((0x25A0, 0x2600),),
    "braille": ((0x2801, 0x2900),),
}


@dataclass(frozen=True)
class GlyphsConfig:
    """Generation settings (all of them key the on-disk folder)."""

    seed: int = 0
    classes_per_superclass: int = 30
    images_per_class: int = 16
    image_size: int = 64
    min_faces: int = 4

    def key(self) -> str:
        return "glyphs" if self == GlyphsConfig() else "glyphs-" + stable_hash(asdict(self), 10)


def _fonts_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _face_cmaps() -> dict[str, set[int]]:
    from fontTools.ttLib import TTFont

    out = {}
    for face in FACES:
        path = _fonts_dir() / f"{face}.ttf"
        if path.is_file():
            out[face] = set(TTFont(str(path), lazy=True).getBestCmap())
    if len(out) < 8:
        raise BadInputError(f"the fonts matplotlib ships were not found in {_fonts_dir()}; reinstall matplotlib")
    return out


class _Renderer:
    """Draws one glyph: fixed font size, bbox-centred, on a supersampled canvas."""

    CANVAS = 128
    FONT_SIZE = 72

    def __init__(self):
        from PIL import ImageFont

        self._fonts = {
            f: ImageFont.truetype(str(_fonts_dir() / f"{f}.ttf"), self.FONT_SIZE)
            for f in FACES
            if (_fonts_dir() / f"{f}.ttf").is_file()
        }

    def draw(self, char: str, face: str):
        """White glyph on black, centred on its bounding box, ``CANVAS``² 'L' image (or None if blank)."""
        from PIL import Image, ImageDraw

        font = self._fonts[face]
        left, top, right, bottom = font.getbbox(char)
        if right - left <= 0 or bottom - top <= 0:
            return None
        img = Image.new("L", (self.CANVAS, self.CANVAS), 0)
        x = (self.CANVAS - (right - left)) / 2 - left
        y = (self.CANVAS - (bottom - top)) / 2 - top
        ImageDraw.Draw(img).text((x, y), char, fill=255, font=font)
        if img.getbbox() is None:
            return None
        return img


def _canonical(renderer: _Renderer, char: str, face: str) -> np.ndarray | None:
    img = renderer.draw(char, face)
    if img is None:
        return None
    small = np.asarray(img.resize((24, 24), resample=3), dtype=np.float64).ravel()
    small -= small.mean()
    norm = np.linalg.norm(small)
    return small / norm if norm > 0 else None


def _choose_classes(cfg: GlyphsConfig, renderer: _Renderer, cmaps: dict[str, set[int]]):
    """Pick characters per superclass; returns list of (superclass, codepoint, faces)."""
    chosen: list[tuple[str, int, list[str]]] = []
    canon: list[np.ndarray] = []
    for sup, ranges in SUPERCLASSES.items():
        pool: list[tuple[int, list[str], np.ndarray]] = []
        for lo, hi in ranges:
            for cp in range(lo, hi):
                ch = chr(cp)
                if unicodedata.category(ch)[0] not in "LSN":
                    continue
                faces = [f for f in FACES if f in cmaps and cp in cmaps[f]]
                if len(faces) < cfg.min_faces:
                    continue
                vec = _canonical(renderer, ch, faces[0])
                if vec is None:
                    continue
                pool.append((cp, faces, vec))
        # drop homoglyphs (of earlier superclasses and within the block), in code-point order
        kept: list[tuple[int, list[str], np.ndarray]] = []
        for cp, faces, vec in pool:
            if any(float(vec @ other) > 0.92 for other in canon) or any(float(vec @ k[2]) > 0.92 for k in kept):
                continue
            kept.append((cp, faces, vec))
        if len(kept) < cfg.classes_per_superclass:
            raise BadInputError(
                f"glyphs: superclass {sup!r} has only {len(kept)} usable characters in the bundled fonts "
                f"(need {cfg.classes_per_superclass}); lower classes_per_superclass"
            )
        pick = np.unique(np.linspace(0, len(kept) - 1, cfg.classes_per_superclass).round().astype(int))
        for i in pick:
            cp, faces, vec = kept[int(i)]
            chosen.append((sup, cp, faces))
            canon.append(vec)
    return chosen


def _jitter(img, rng: np.random.Generator, size: int):
    """Random affine + stroke jitter on a white-on-black canvas, then downsample and invert."""
    from PIL import Image, ImageFilter

    c = img.size[0] / 2
    angle = np.deg2rad(rng.uniform(-12, 12))
    scale = rng.uniform(0.85, 1.15)
    shear = rng.uniform(-0.15, 0.15)
    tx, ty = rng.uniform(-0.06, 0.06, size=2) * img.size[0]
    # forward map: p' = S R H p + t (about the centre); PIL wants the inverse map
    cos, sin = np.cos(angle), np.sin(angle)
    fwd = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    inv = np.linalg.inv(fwd)
    off = np.array([c, c]) - inv @ np.array([c + tx, c + ty])
    coeffs = (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])
    out = img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    stroke = rng.integers(0, 3)  # 0 thinner, 1 unchanged, 2 thicker
    if stroke == 0:
        out = out.filter(ImageFilter.MinFilter(3))
    elif stroke == 2:
        out = out.filter(ImageFilter.MaxFilter(5))
    out = out.resize((size, size), resample=Image.Resampling.BOX)
    return Image.eval(out, lambda v: 255 - v)


def generate_glyphs(target: Path, cfg: GlyphsConfig = GlyphsConfig(), progress: bool = True) -> dict:
    """Render the dataset into ``target`` (which must not exist yet); returns the manifest."""
    renderer = _Renderer()
    cmaps = _face_cmaps()
    chosen = _choose_classes(cfg, renderer, cmaps)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    classes = []
    try:
        bar = progress_bar(chosen, enabled=progress, desc="rendering glyphs", unit="class", leave=True, delay=0)
        for sup, cp, faces in bar:
            rng = np.random.default_rng([cfg.seed, GLYPHS_VERSION, cp])
            order = [faces[i] for i in rng.permutation(len(faces))]
            folder = tmp / sup / f"U+{cp:04X}"
            folder.mkdir(parents=True)
            for k in range(cfg.images_per_class):
                img = renderer.draw(chr(cp), order[k % len(order)])
                _jitter(img, rng, cfg.image_size).save(folder / f"{k:02d}.png", optimize=False)
            classes.append(
                {
                    "label": f"{sup}/U+{cp:04X}",
                    "superclass": sup,
                    "char": chr(cp),
                    "name": unicodedata.name(chr(cp), f"U+{cp:04X}"),
                    "faces": len(faces),
                }
            )
        manifest = {
            "schema": "oodml.glyphs/1",
            "version": GLYPHS_VERSION,
            "config": asdict(cfg),
            "superclasses": list(SUPERCLASSES),
            "classes": classes,
        }
        write_json(tmp / "glyphs.json", manifest)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process finished first: keep its (identical) copy
            if not (target / "glyphs.json").is_file():
                raise
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_glyphs(
    root: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    classes_per_superclass: int = 30,
    images_per_class: int = 16,
    image_size: int = 64,
    progress: bool = True,
) -> ImageDataset:
    """Load (generating on first use) the embedded ``glyphs`` dataset.

    ``root`` is the data root (default ``$OODML_DATA`` or ``~/.cache/oodml/data``); the images
    live in ``<root>/glyphs``. ``download`` is accepted for interface symmetry and ignored: this
    dataset is generated locally and needs no network.
    """
    del download
    cfg = GlyphsConfig(seed, classes_per_superclass, images_per_class, image_size)
    base = data_root(root)
    if base.name.startswith("glyphs") and (base / "glyphs.json").is_file():
        folder = base
    else:
        folder = base / cfg.key()
    manifest_path = folder / "glyphs.json"
    if not manifest_path.is_file():
        if folder.exists():
            raise BadInputError(
                f"glyphs: {folder} exists but has no glyphs.json (an interrupted copy?); delete the folder "
                "and run again to regenerate it"
            )
        generate_glyphs(folder, cfg, progress=progress)
    manifest = read_json(manifest_path, "glyphs manifest")
    if manifest.get("schema") != "oodml.glyphs/1" or manifest.get("config") != asdict(cfg):
        raise BadInputError(
            f"glyphs: {manifest_path} was generated with other settings or an older version; delete {folder} "
            "to regenerate it"
        )
    items: list[Item] = []
    train: list[str] = []
    test: list[str] = []
    by_sup: dict[str, list[str]] = {}
    for c in manifest["classes"]:
        label, sup = c["label"], c["superclass"]
        by_sup.setdefault(sup, []).append(label)
        cls_dir = folder / label
        for k in range(cfg.images_per_class):
            items.append(Item(str(cls_dir / f"{k:02d}.png"), label, sup))
    for labels in by_sup.values():
        half = len(labels) // 2
        train.extend(labels[:half])
        test.extend(labels[half:])
    classes = [c["label"] for c in manifest["classes"]]
    return ImageDataset(
        "glyphs",
        folder,
        items,
        classes=classes,
        train_classes=train,
        test_classes=test,
        description="characters rendered from bundled fonts; superclass = script / Unicode block",
    )
