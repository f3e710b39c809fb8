"""Ground truth -> :class:`Targets` in the framework's batch form (docs/design.md, ground truth).

Whatever the source (COCO json, YOLO txt folder, the bundle's own ``targets``), GTs end up
as the rows a training batch holds: image index, class index, box as normalised
``cx, cy, w, h`` of the network input, grouped by image in ascending order. Each recipe then
converts them exactly as its framework does. Row ``r`` is the GT's *global index*; its index
inside its image is ``r - first_row[image]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from yolodbg import heads
from yolodbg.bundle import Bundle, ImageInfo
from yolodbg.errors import GroundTruthError
from yolodbg.geometry import Letterbox


@dataclass(frozen=True)
class IgnoredBox:
    """A GT that takes no part in assignment (COCO ``iscrowd``, a box outside the image, ...)."""

    image_index: int
    ann_id: int | None
    box_xyxy: tuple[float, float, float, float]  # input pixels
    category: int | None
    reason: str


@dataclass(frozen=True)
class Targets:
    """GT rows of one batch (M rows over B images)."""

    batch_size: int
    input_size: tuple[int, int]  # (H, W)
    batch_idx: Tensor  # (M,) long, ascending
    cls: Tensor  # (M,) long class index
    bboxes: Tensor  # (M, 4) float32 normalised cx, cy, w, h of the input
    ann_ids: tuple[int | None, ...]  # COCO annotation id per row (None for other sources)
    source: str
    ignored: tuple[IgnoredBox, ...] = ()
    warnings: tuple[str, ...] = ()
    category_ids: tuple[int, ...] | None = None  # class index -> dataset category id
    letterboxes: tuple[Letterbox | None, ...] = ()  # per image, input <- original mapping
    orig_sizes: tuple[tuple[int, int] | None, ...] = ()  # per image (h, w)
    # the framework loader whose letterbox mapped the images that record no scale/pad
    letterbox_mode: str | None = None
    letterbox_from: str | None = None  # "--letterbox" or "head <name>"
    letterbox_applied: tuple[int, ...] = ()  # the batch indices it was applied to

    def __len__(self) -> int:
        return int(self.batch_idx.shape[0])

    @property
    def first_row(self) -> Tensor:
        """``(B + 1,)`` offsets: image i owns rows ``first_row[i]:first_row[i+1]``."""
        counts = torch.bincount(self.batch_idx, minlength=self.batch_size)
        return torch.cat((torch.zeros(1, dtype=torch.long), counts.cumsum(0)))

    def letterbox_doc(self) -> dict[str, Any] | None:
        """For reports: which loader's letterbox mapped the GT of which images (None: no image needed one,
        all had scale/pad or the GT came from the bundle's targets)."""
        if self.letterbox_mode is None:
            return None
        return {
            "mode": self.letterbox_mode,
            "chosen_by": self.letterbox_from,
            "images": list(self.letterbox_applied),
        }

    def local_index(self) -> Tensor:
        """``(M,)`` index of each row among its image's rows."""
        return torch.arange(len(self)) - self.first_row[self.batch_idx]

    def boxes_xyxy(self) -> Tensor:
        """``(M, 4)`` xyxy input pixels, in float64 (for reports; recipes convert as their framework does)."""
        h, w = self.input_size
        b = self.bboxes.double() * torch.tensor([w, h, w, h], dtype=torch.float64)
        return torch.cat((b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2), 1)


def _as_tensor(x: Any, name: str, where: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().cpu()
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise GroundTruthError(f"{where}: targets.{name} is not a tensor or list of numbers") from None


def from_batch(
    raw: dict[str, Any], batch_size: int, input_size: tuple[int, int], nc: int, where: str = "bundle"
) -> Targets:
    """Targets from the training batch's own ``batch_idx``, ``cls``, ``bboxes`` (normalised cxcywh)."""
    missing = [k for k in ("batch_idx", "cls", "bboxes") if k not in raw]
    if missing:
        raise GroundTruthError(
            f"{where}: targets lacks {', '.join(missing)}; expected batch_idx, cls and bboxes"
        )
    bidx = _as_tensor(raw["batch_idx"], "batch_idx", where).reshape(-1)
    cls = _as_tensor(raw["cls"], "cls", where).reshape(-1)
    bboxes = _as_tensor(raw["bboxes"], "bboxes", where)
    m = bidx.shape[0]
    if bboxes.numel() == 0 and m == 0:
        bboxes = torch.zeros(0, 4)
    if bboxes.ndim != 2 or bboxes.shape[1] != 4 or bboxes.shape[0] != m or cls.shape[0] != m:
        raise GroundTruthError(
            f"{where}: targets have {m} batch_idx, {cls.shape[0]} cls and bboxes of shape {tuple(bboxes.shape)}; "
            "expected (M,), (M,) and (M, 4)"
        )
    warnings: list[str] = []
    if m:
        if bidx.is_floating_point() and not bool((bidx == bidx.round()).all()):
            bad = float(bidx[bidx != bidx.round()][0])
            raise GroundTruthError(
                f"{where}: targets.batch_idx holds {bad:g}; expected whole image indices 0..{batch_size - 1}"
            )
        if bool(((bidx < 0) | (bidx >= batch_size)).any()):
            bad = int(bidx[(bidx < 0) | (bidx >= batch_size)][0])
            raise GroundTruthError(
                f"{where}: targets.batch_idx holds image {bad} but the outputs have {batch_size} images"
            )
        if bool((cls != cls.round()).any()) or bool(((cls < 0) | (cls >= nc)).any()):
            bad = float(cls[(cls != cls.round()) | (cls < 0) | (cls >= nc)][0])
            raise GroundTruthError(
                f"{where}: targets.cls holds {bad:g} but the outputs have {nc} classes (0..{nc - 1}); "
                "check the class mapping or the model's nc"
            )
        if not bool(torch.isfinite(bboxes).all()):
            row = int((~torch.isfinite(bboxes)).any(1).nonzero()[0])
            raise GroundTruthError(f"{where}: targets.bboxes[{row}] is not finite; fix or drop that row")
    bidx = bidx.long()
    order = torch.sort(bidx, stable=True).indices
    if m and not bool((order == torch.arange(m)).all()):
        warnings.append(
            "targets.batch_idx is not sorted; rows were sorted by image (Ultralytics' collate sorts them, and "
            "its 8.4 loss requires it)"
        )
    return Targets(
        batch_size=batch_size,
        input_size=input_size,
        batch_idx=bidx[order],
        cls=cls.long()[order],
        bboxes=bboxes.to(torch.float32)[order],
        ann_ids=(None,) * m,
        source=f"{where} targets",
        warnings=tuple(warnings),
    )


@dataclass
class _Rows:
    """Rows being collected image by image (input-pixel xyxy, float64)."""

    batch_idx: list[int] = field(default_factory=list)
    cls: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    ann_ids: list[int | None] = field(default_factory=list)
    ignored: list[IgnoredBox] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, image: int, cls: int, box: tuple[float, float, float, float], ann_id: int | None) -> None:
        self.batch_idx.append(image)
        self.cls.append(cls)
        self.boxes.append(box)
        self.ann_ids.append(ann_id)

    def to_targets(self, batch_size: int, input_size: tuple[int, int], source: str, **extra: Any) -> Targets:
        h, w = input_size
        if self.boxes:
            b = torch.tensor(self.boxes, dtype=torch.float64)
            cxcywh = torch.stack(
                (
                    (b[:, 0] + b[:, 2]) / 2 / w,
                    (b[:, 1] + b[:, 3]) / 2 / h,
                    (b[:, 2] - b[:, 0]) / w,
                    (b[:, 3] - b[:, 1]) / h,
                ),
                1,
            ).to(torch.float32)
        else:
            cxcywh = torch.zeros(0, 4)
        return Targets(
            batch_size=batch_size,
            input_size=input_size,
            batch_idx=torch.tensor(self.batch_idx, dtype=torch.long),
            cls=torch.tensor(self.cls, dtype=torch.long),
            bboxes=cxcywh,
            ann_ids=tuple(self.ann_ids),
            source=source,
            ignored=tuple(self.ignored),
            warnings=tuple(self.warnings),
            **extra,
        )


def _finite_box(box: tuple[float, float, float, float], where: str) -> tuple[float, float, float, float]:
    """A box mapped into the input; finite numbers so large that the mapping overflows are refused."""
    if not all(math.isfinite(v) for v in box):
        raise GroundTruthError(
            f"{where}: the box overflows when mapped into the network input (values near 1e308); fix its numbers"
        )
    return box


def _clip_to_content(
    box: tuple[float, float, float, float], lb: Letterbox, orig: tuple[int, int], input_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Clip an input-pixel box to the image content (as the dataloader clips labels to the image)."""
    h, w = orig
    x_lo, y_lo = lb.pad_left, lb.pad_top
    x_hi, y_hi = (
        min(lb.pad_left + w * lb.scale_x, input_size[1]),
        min(lb.pad_top + h * lb.scale_y, input_size[0]),
    )
    x1, y1, x2, y2 = box
    return (
        min(max(x1, x_lo), x_hi),
        min(max(y1, y_lo), y_hi),
        min(max(x2, x_lo), x_hi),
        min(max(y2, y_lo), y_hi),
    )


def letterbox_mode(bundle: Bundle) -> tuple[str, str]:
    """``(mode, why)``: the loader whose mapping applies to images without scale/pad: ``--letterbox``
    when given, else the one of the head's framework (its family's ``letterbox``, :mod:`yolodbg.heads`)."""
    if bundle.letterbox_mode is not None:
        return bundle.letterbox_mode, "--letterbox"
    family = heads.get(bundle.head)
    return (family.letterbox if family is not None else "ultralytics"), f"head {bundle.head}"


def _letterbox_for(
    img: ImageInfo, orig: tuple[int, int], input_size: tuple[int, int], imgsz: int | None, mode: str
) -> Letterbox:
    """The bundle's scale/pad for this image, else the ``mode`` loader's letterbox (``meta.imgsz`` for
    rect batches of Ultralytics and YOLOv5)."""
    return img.letterbox if img.letterbox is not None else Letterbox.for_mode(mode, orig, input_size, imgsz)


def _meta_imgsz(bundle: Bundle) -> int | None:
    value = bundle.meta.get("imgsz")
    if value is None:
        return None
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if not sizes or not all(_is_number(v) and v >= 1 and v == int(v) for v in sizes):
        raise GroundTruthError(
            f"{bundle.source}: meta.imgsz is {value!r}; expected the training image size in whole pixels, e.g. 640"
        )
    return int(max(sizes))


def from_coco(path: str | Path, bundle: Bundle, input_size: tuple[int, int], nc: int) -> Targets:
    """Targets from a COCO detection json (read with pycocotools), mapped into the network input."""
    path = Path(path)
    cf = load_coco(path)
    coco = cf.coco
    cat_ids = sorted(coco.getCatIds())
    if bundle.category_ids is not None:
        mapping = {c: i for i, c in enumerate(bundle.category_ids)}
        cats_note = "the bundle's category_ids"
    else:
        mapping = {c: i for i, c in enumerate(cat_ids)}
        cats_note = f"the sorted category ids of {path.name}"
    if len(mapping) > nc:
        raise GroundTruthError(
            f"{path}: {len(mapping)} categories (via {cats_note}) but the outputs have {nc} classes; "
            "use the annotation file the model was trained with, or set category_ids in the bundle"
        )
    rows = _Rows()
    letterboxes, origs, applied = [], [], []
    mode, why = letterbox_mode(bundle)
    for info in bundle.images:
        image_id = _resolve_coco_id(info, cf, path, bundle)
        meta = coco.imgs[image_id]
        try:
            orig = info.orig_size or (int(meta["height"]), int(meta["width"]))
        except KeyError:
            raise GroundTruthError(
                f"{path}: images entry {image_id} lacks width/height; add them or give orig_size in the bundle"
            ) from None
        lb = _letterbox_for(info, orig, input_size, _meta_imgsz(bundle), mode)
        if info.letterbox is None:
            applied.append(info.index)
        letterboxes.append(lb)
        origs.append(orig)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            _add_coco_ann(rows, ann, info.index, lb, orig, input_size, mapping, nc, path)
    return rows.to_targets(
        bundle.batch_size,
        input_size,
        f"coco:{path}",
        category_ids=tuple(k for k, _ in sorted(mapping.items(), key=lambda kv: kv[1])),
        letterboxes=tuple(letterboxes),
        orig_sizes=tuple(origs),
        **_letterbox_record(mode, why, applied),
    )


def _letterbox_record(mode: str, why: str, applied: list[int]) -> dict[str, Any]:
    """The Targets fields that say which letterbox mapped which images (nothing when none was needed)."""
    if not applied:
        return {}
    return {"letterbox_mode": mode, "letterbox_from": why, "letterbox_applied": tuple(applied)}


@dataclass(frozen=True)
class CocoFile:
    """A COCO json read by pycocotools, with its images indexed by file name (and by name stem)."""

    coco: Any  # pycocotools.coco.COCO; annotations carry iscrowd and area (defaults 0 and w·h)
    by_name: dict[str, int]

    def find(self, info: ImageInfo) -> int | None:
        """The json image id of a batch element: its image_id, else its file name, else the name's stem."""
        stem = Path(info.file_name).stem if info.file_name else None
        for key in (info.image_id, info.file_name, stem):
            if isinstance(key, int) and key in self.coco.imgs:
                return key
            if isinstance(key, str) and key in self.by_name:
                return self.by_name[key]
        return None


_COCO_CACHE: dict[tuple[str, int, int], CocoFile] = {}


def load_coco(path: str | Path) -> CocoFile:
    """Read and validate a COCO json once per process (keyed by path, size and mtime: edits are seen).

    A scan meets the same file for every bundle; parsing a 25 MB ``instances_val2017.json``
    takes about a second, so it is kept (the last file only). Callers must not change it.
    """
    p = Path(path)
    try:
        st = p.resolve().stat()
    except OSError:
        st = None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns) if st is not None else None
    if key is not None and key in _COCO_CACHE:
        return _COCO_CACHE[key]
    coco = _load_coco(p)
    for ann in coco.dataset["annotations"]:  # COCOeval needs both; hand-made files may lack them
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
    by_name: dict[str, int] = {}
    for img in coco.dataset.get("images", []):
        name = img.get("file_name")
        if name:
            by_name[name] = img["id"]
            by_name.setdefault(Path(name).stem, img["id"])
    out = CocoFile(coco, by_name)
    _COCO_CACHE.clear()
    if key is not None:
        _COCO_CACHE[key] = out
    return out


def _load_coco(path: Path):
    from pycocotools.coco import COCO

    from yolodbg.paths import regular_file

    regular_file(
        path, "--gt", "pass a COCO json or a YOLO labels folder to --gt", GroundTruthError, whole=True
    )
    data = _read_json(path)
    check_coco(data, path)
    data.setdefault(
        "categories", [{"id": c} for c in sorted({a["category_id"] for a in data["annotations"]})]
    )
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _same_file(info: ImageInfo, json_name: str | None, path: Path, bundle: Bundle) -> None:
    """An id from --image-ids must name the image the bundle records by file name (when both are known)."""
    if json_name and Path(json_name).stem != Path(info.file_name).stem:
        raise GroundTruthError(
            f"--image-ids gives {info.image_id} for batch element {info.index}, which {path.name} names "
            f"{json_name}, but {bundle.source} records {info.file_name} there; drop --image-ids or fix it"
        )


def _names_stem(image_id: int | str | None, stem: str) -> bool:
    """``--image-ids`` value ``image_id`` names the label file ``stem`` (``000123`` was read as 123)."""
    return str(image_id) == stem or (isinstance(image_id, int) and stem.isdigit() and int(stem) == image_id)


def _read_json(path: Path) -> Any:
    """The parsed json of a GT file; undecodable, malformed or absurdly nested files are input errors."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GroundTruthError(
            f"{path}: not valid JSON ({e}); expected a COCO detection file (UTF-8)"
        ) from None
    except RecursionError:
        raise GroundTruthError(
            f"{path}: not a COCO detection file (JSON nested too deeply); expected images, annotations and "
            "categories lists"
        ) from None
    except OSError as e:
        raise GroundTruthError(
            f"{path}: cannot be read ({e.strerror or e}); pass a readable COCO json"
        ) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_coco(data: Any, path: Path) -> None:
    """Refuse a COCO json whose structure or values would be read wrong (one message: file, field, fix).

    pycocotools indexes whatever it is given: an item without ``id`` ends in a ``KeyError``, a
    duplicated id silently replaces its twin, a NaN box (Python's json reads ``NaN``) poisons the
    loss, an annotation of an image the file does not list is never seen. So every item must be an
    object with an integer ``id`` (images: an integer or a string) unique in its list; a bbox is 4
    finite numbers; ``category_id`` an integer among the categories; ``image_id`` one of the images;
    ``width``/``height`` positive finite numbers. Zero or negative box sides are kept for the
    loaders, which leave them out with a warning as the frameworks' dataloaders drop them.
    """
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise GroundTruthError(
            f"{path}: not a COCO detection file; it needs 'images' and 'annotations' lists"
        )
    sections = ["images", "annotations"] + (["categories"] if "categories" in data else [])
    ids: dict[str, set] = {}
    for name in sections:
        items = data[name]
        if not isinstance(items, list):
            raise GroundTruthError(f"{path}: {name} is {_kind(items)}; expected a list of objects")
        ids[name] = _unique_ids(items, name, path)
    for i, img in enumerate(data["images"]):
        if img.get("file_name") is not None and not isinstance(img["file_name"], str):
            raise GroundTruthError(
                f"{path}: images[{i}].file_name is {img['file_name']!r}; expected the image's file name (a string)"
            )
        for key in ("width", "height"):
            if key in img and not (_is_number(img[key]) and img[key] > 0):
                raise GroundTruthError(
                    f"{path}: images[{i}].{key} is {img[key]!r}; expected the image's size in pixels (> 0)"
                )
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, i, path, ids)


def _kind(value: Any) -> str:
    """A JSON value's kind in the file's own terms (a Python dict is a JSON object)."""
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), "null" if value is None else type(value).__name__)


def _unique_ids(items: list, name: str, path: Path) -> set:
    seen: set = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise GroundTruthError(f"{path}: {name}[{i}] is {_kind(item)}; expected an object")
        if "id" not in item:
            raise GroundTruthError(f"{path}: {name}[{i}] has no id; give every item of {name} a unique id")
        key = item["id"]
        ok = _is_int(key) or (name == "images" and isinstance(key, str) and key != "")
        if not ok:
            kind = "an integer or a string" if name == "images" else "an integer"
            raise GroundTruthError(f"{path}: {name}[{i}].id is {key!r}; expected {kind}")
        if key in seen:
            raise GroundTruthError(
                f"{path}: {name}[{i}].id {key!r} is used twice in {name}; ids must be unique"
            )
        seen.add(key)
    return seen


def _check_annotation(ann: Any, i: int, path: Path, ids: dict[str, set]) -> None:
    where = f"{path}: annotations[{i}]"
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        got = f"has {len(bbox)} numbers" if isinstance(bbox, list) and len(bbox) != 4 else f"is {bbox!r}"[:80]
        raise GroundTruthError(f"{where}.bbox {got}; expected [x, y, width, height]: 4 finite numbers")
    for key in ("image_id", "category_id"):
        if key not in ann:
            raise GroundTruthError(f"{where} lacks {key}; every annotation needs image_id and category_id")
    image_id = ann["image_id"]
    if not (_is_int(image_id) or isinstance(image_id, str)) or image_id not in ids["images"]:
        raise GroundTruthError(
            f"{where}.image_id {ann['image_id']!r} is not the id of any image; fix it or add the image to images"
        )
    cat = ann["category_id"]
    if not _is_int(cat):
        raise GroundTruthError(f"{where}.category_id is {cat!r}; expected an integer category id")
    if "categories" in ids and cat not in ids["categories"]:
        raise GroundTruthError(
            f"{where}: annotation {ann['id']} has category_id {cat}, which is not in categories; fix it or add "
            "the category to categories"
        )
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
        raise GroundTruthError(f"{where}.iscrowd is {ann['iscrowd']!r}; expected 0 or 1")


def _resolve_coco_id(info: ImageInfo, cf: CocoFile, path: Path, bundle: Bundle) -> int:
    if info.image_id is None and info.file_name is None:
        raise GroundTruthError(
            f"{bundle.source}: image {info.index} has no image_id or file_name, so it cannot be matched to "
            f"{path.name}; pass --image-ids 139,285,... (one per batch element)"
        )
    found = cf.find(info)
    if found is not None and bundle.image_ids_given and info.file_name:
        _same_file(info, cf.coco.imgs[found].get("file_name"), path, bundle)
    if found is None:
        raise GroundTruthError(
            f"{path}: image id {info.label!r} (batch element {info.index} of {bundle.source}) is not in the json's "
            "images; check --image-ids or the bundle's images[].image_id"
        )
    return found


def _add_coco_ann(
    rows: _Rows,
    ann: dict,
    image: int,
    lb: Letterbox,
    orig: tuple[int, int],
    input_size: tuple[int, int],
    mapping: dict[int, int],
    nc: int,
    path: Path,
) -> None:
    ann_id = ann.get("id")
    x, y, w, h = (float(v) for v in ann["bbox"])
    box = _finite_box(lb.to_input_xyxy(x, y, w, h), f"{path}: annotation {ann_id}")
    cat = ann["category_id"]
    if cat not in mapping:
        raise GroundTruthError(
            f"{path}: annotation {ann_id} has category_id {cat}, which the class mapping lacks "
            f"(known: {sorted(mapping)[:12]}); fix the annotation or the bundle's category_ids"
        )
    if mapping[cat] >= nc:
        raise GroundTruthError(
            f"{path}: category_id {cat} maps to class {mapping[cat]} but the outputs have {nc} classes"
        )
    if ann.get("iscrowd"):
        rows.ignored.append(IgnoredBox(image, ann_id, box, cat, "iscrowd"))
        return
    if w <= 0 or h <= 0:
        rows.ignored.append(IgnoredBox(image, ann_id, box, cat, "degenerate"))
        rows.warnings.append(
            f"{path.name}: annotation {ann_id} has a box of width {w:g} and height {h:g}; left out "
            "(Ultralytics' dataloader drops such labels)"
        )
        return
    clipped = _clip_to_content(box, lb, orig, input_size)
    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
        rows.ignored.append(IgnoredBox(image, ann_id, box, cat, "outside_image"))
        rows.warnings.append(f"{path.name}: annotation {ann_id} lies outside its image; left out")
        return
    if clipped != box:
        rows.warnings.append(
            f"{path.name}: annotation {ann_id} extends beyond its image; clipped to the image"
        )
    rows.add(image, mapping[cat], clipped, ann_id)


def _regular_label(label: Path) -> None:
    """A label file must be a regular text file of sane size (a FIFO would block the read forever)."""
    from yolodbg.paths import LABEL_FILE_LIMIT, regular_file

    fix = "a YOLO label file is a text file with one 'cls cx cy w h' line per box"
    regular_file(label, "the label file", fix, GroundTruthError, LABEL_FILE_LIMIT)


def _label_lines(label: Path) -> list[str]:
    """The lines of a YOLO label file; a folder, an unreadable or a non-UTF-8 file is an input error."""
    _regular_label(label)
    try:
        return label.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise GroundTruthError(
            f"{label}: not UTF-8 text (byte {e.start}); a label file holds lines 'cls cx cy w h'"
        ) from None
    except OSError as e:
        raise GroundTruthError(f"{label}: cannot be read ({e.strerror or e})") from None


def _label_file_warnings(label: Path, lines: list[str]) -> list[str]:
    """What the frameworks' label check would object to in a file yolodbg still reads (documented warnings).

    Ultralytics' and YOLOv5's ``verify_image_label`` drop an image whose labels hold a coordinate
    above 1 or any negative value ("corrupt"), and remove duplicated lines; yolodbg reads such a
    file as written (boxes clipped to the image, duplicates counted twice), so it says so.
    """
    out = []
    rows = [tuple(ln.split()) for ln in lines if ln.split()]
    try:
        values = [float(v) for row in rows for v in row[:5]]
        coords = [float(v) for row in rows for v in row[1:5]]
    except ValueError:
        return out  # the line-by-line check names the bad field
    if any(v < 0 for v in values) or any(v > 1 for v in coords):
        out.append(
            f"{label}: values outside [0, 1]; Ultralytics' and YOLOv5's dataloaders drop this image as corrupt, "
            "yolodbg read its boxes (clipped to the image)"
        )
    duplicates = len(rows) - len(set(rows))
    if duplicates:
        out.append(
            f"{label}: {duplicates} duplicated line(s); Ultralytics and YOLOv5 remove duplicates, yolodbg counts "
            "each line"
        )
    return out


def _label_row(line: str, where: str, nc: int) -> tuple[int, float, float, float, float] | None:
    """``cls cx cy w h`` of one label line (None for a blank line), refused unless finite and a whole class.

    Exactly 5 fields: Ultralytics treats a file with longer lines as polygons (boxes from their
    extremes) and a 6th column as a corrupt label, so reading the first 5 would be silently wrong.

    ``int(float("1.5"))`` would silently make class 1 and ``float("nan")`` reads as a number, so
    the class must be a whole number in ``0..nc-1`` and the four coordinates finite (zero or
    negative sides are left to the caller, which leaves such boxes out with a warning).
    """
    parts = line.split()
    if not parts:
        return None
    if len(parts) < 5:
        raise GroundTruthError(f"{where}: {len(parts)} fields; expected 'cls cx cy w h'")
    if len(parts) > 5:  # Ultralytics reads longer lines as polygons (or refuses a 6th column), never as a box
        raise GroundTruthError(
            f"{where}: {len(parts)} fields; yolodbg reads box labels 'cls cx cy w h' (a segment or keypoint "
            "label? convert it to boxes)"
        )
    try:
        values = [float(v) for v in parts[:5]]
    except ValueError:
        raise GroundTruthError(
            f"{where}: not numbers: {line.strip()[:80]!r}; expected 'cls cx cy w h'"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise GroundTruthError(
            f"{where}: {line.strip()[:80]!r} holds a non-finite number; fix or drop that line"
        )
    c = values[0]
    if c != int(c):
        raise GroundTruthError(
            f"{where}: class {parts[0]} is not a whole number; expected a class index 0..{nc - 1}"
        )
    if not 0 <= c < nc:
        raise GroundTruthError(f"{where}: class {int(c)} but the outputs have {nc} classes (0..{nc - 1})")
    return int(c), values[1], values[2], values[3], values[4]


def from_yolo_dir(path: str | Path, bundle: Bundle, input_size: tuple[int, int], nc: int) -> Targets:
    """Targets from a YOLO labels folder (``<stem>.txt``: ``cls cx cy w h`` normalised to the original image)."""
    path = Path(path)
    if not path.is_dir():
        raise GroundTruthError(f"{path}: not a folder; --gt takes a COCO json file or a YOLO labels folder")
    rows = _Rows()
    letterboxes, origs, applied = [], [], []
    mode, why = letterbox_mode(bundle)
    for info in bundle.images:
        label = path / f"{_label_stem(info, bundle, path)}.txt"
        lb, orig, mapped_here = _image_geometry(info, bundle, input_size, mode)
        if mapped_here:
            applied.append(info.index)
        letterboxes.append(lb)
        origs.append(orig)
        if not label.exists():
            rows.warnings.append(f"{label}: no label file; image {info.label} counted as having no objects")
            continue
        _add_label_file(rows, label, info.index, lb, orig, input_size, nc)
    return rows.to_targets(
        bundle.batch_size,
        input_size,
        f"yolo:{path}",
        category_ids=bundle.category_ids,
        letterboxes=tuple(letterboxes),
        orig_sizes=tuple(origs),
        **_letterbox_record(mode, why, applied),
    )


def _label_stem(info: ImageInfo, bundle: Bundle, path: Path) -> str:
    """The stem of an image's label file: its file name's, else its image id (checked against ``--image-ids``)."""
    stem = (
        Path(info.file_name).stem
        if info.file_name
        else (str(info.image_id) if info.image_id is not None else None)
    )
    if stem is None:
        raise GroundTruthError(
            f"{bundle.source}: image {info.index} has no file_name or image_id to find its label file in "
            f"{path}; pass --image-ids with the label file stems"
        )
    if bundle.image_ids_given and info.file_name and not _names_stem(info.image_id, stem):
        raise GroundTruthError(
            f"--image-ids gives {info.image_id} for batch element {info.index}, but {bundle.source} records "
            f"{info.file_name} there (its label file is {stem}.txt); drop --image-ids or fix it"
        )
    return stem


def _image_geometry(
    info: ImageInfo, bundle: Bundle, input_size: tuple[int, int], mode: str
) -> tuple[Letterbox, tuple[int, int], bool]:
    """(letterbox, original (h, w), whether yolodbg chose the letterbox) of one image.

    Without a recorded letterbox the framework's loader's is applied to the original size; without
    either, labels are relative to the input itself; with a letterbox only, the original size is
    what the letterbox implies.
    """
    orig = info.orig_size
    mapped_here = False
    if orig is None and info.letterbox is None:
        orig = input_size  # no letterbox information: labels are relative to the input itself
    elif info.letterbox is None:
        mapped_here = True
    lb = (
        _letterbox_for(info, orig, input_size, _meta_imgsz(bundle), mode)
        if orig is not None
        else info.letterbox
    )
    if orig is None:
        orig = (
            round((input_size[0] - 2 * lb.pad_top) / lb.scale_y),
            round((input_size[1] - 2 * lb.pad_left) / lb.scale_x),
        )
    return lb, orig, mapped_here


def _add_label_file(
    rows: _Rows,
    label: Path,
    image: int,
    lb: Letterbox,
    orig: tuple[int, int],
    input_size: tuple[int, int],
    nc: int,
) -> None:
    """Every box of one label file, mapped into the input and clipped to the image's content; boxes
    with no area are left out (``ignored``) with a warning."""
    lines = _label_lines(label)
    rows.warnings.extend(_label_file_warnings(label, lines))
    for ln, line in enumerate(lines, 1):
        parsed = _label_row(line, f"{label}:{ln}", nc)
        if parsed is None:
            continue
        c, cx, cy, w, h = parsed
        oh, ow = orig
        box = _finite_box(
            lb.to_input_xyxy((cx - w / 2) * ow, (cy - h / 2) * oh, w * ow, h * oh), f"{label}:{ln}"
        )
        if w <= 0 or h <= 0:
            rows.ignored.append(IgnoredBox(image, None, box, c, "degenerate"))
            rows.warnings.append(f"{label}:{ln}: box of width {w:g} and height {h:g}; left out")
            continue
        clipped = _clip_to_content(box, lb, orig, input_size)
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            rows.ignored.append(IgnoredBox(image, None, box, c, "outside_image"))
            continue
        rows.add(image, c, clipped, None)


def load_targets(gt: str | Path | None, bundle: Bundle, input_size: tuple[int, int], nc: int) -> Targets:
    """The GT of a bundle: ``--gt`` (COCO json or YOLO folder) if given, else the bundle's own targets."""
    if gt is not None:
        p = Path(gt)
        if p.is_dir():
            return from_yolo_dir(p, bundle, input_size, nc)
        return from_coco(p, bundle, input_size, nc)
    if bundle.targets is None:
        raise GroundTruthError(
            f"{bundle.source}: no ground truth: the bundle has no targets; pass --gt ANN.json or --gt labels/"
        )
    t = from_batch(bundle.targets, bundle.batch_size, input_size, nc, bundle.source)
    lbs = tuple(i.letterbox for i in bundle.images)
    from dataclasses import replace

    return replace(
        t,
        category_ids=bundle.category_ids,
        letterboxes=lbs,
        orig_sizes=tuple(i.orig_size for i in bundle.images),
    )
