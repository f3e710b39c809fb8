"""Prediction bundles: load, validate and save (docs/design.md, bundle format).

A bundle is a ``torch.save`` file read with ``weights_only=True`` only: a prediction file
must never be able to run code. It is either the canonical dict (``{"yolodbg": 1, "head":
..., "outputs": ...}``) or a bare head output (what ``torch.save(model(x))`` gives), whose
missing fields come from options or are inferred from shapes.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolodbg import bundle_options, heads
from yolodbg.atomic import atomic_write
from yolodbg.errors import BundleError
from yolodbg.geometry import LETTERBOX_MODES, Letterbox

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ImageInfo:
    """One batch element: where it came from and how it was letterboxed into the input."""

    index: int
    image_id: int | str | None = None
    file_name: str | None = None
    orig_size: tuple[int, int] | None = None  # (h, w) of the original image
    letterbox: Letterbox | None = None  # from the bundle's scale/pad; None = compute from orig_size

    @property
    def label(self) -> str:
        """How the image is named in reports: its id, else its file name, else its batch index."""
        if self.image_id is not None:
            return str(self.image_id)
        return self.file_name or f"#{self.index}"


@dataclass(frozen=True)
class Bundle:
    """A validated prediction bundle. ``outputs`` is the raw head output, untouched."""

    head: str
    outputs: Any
    batch_size: int
    input_size: tuple[int, int] | None  # (H, W) network input in pixels
    strides: tuple[float, ...] | None
    images: tuple[ImageInfo, ...]
    targets: dict[str, Any] | None = None
    category_ids: tuple[int, ...] | None = None
    anchors: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    nc: int | None = None  # number of classes when given by --nc (needed only for ambiguous outputs)
    image_ids_given: bool = False  # images[].image_id came from --image-ids (checked against file names)
    letterbox_mode: str | None = (
        None  # --letterbox: the loader for images without scale/pad (None: the head's)
    )
    source: str = "<memory>"
    digest: str | None = None  # sha256 of the file

    @property
    def family(self) -> heads.HeadFamily:
        """The registered head family of :attr:`head` (what decodes, post-processes and letterboxes it)."""
        return heads.family(self.head)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


CLAIM_SLACK = 64 << 20  # bytes tensors may claim beyond what the file stores (small expanded grids)


def _tensors(data: Any) -> Any:
    """``(where, tensor)`` of every tensor in a loaded object, without recursion (any nesting depth)."""
    import torch

    stack = [("", data)]
    while stack:
        where, x = stack.pop()
        if isinstance(x, torch.Tensor):
            yield where or "the file", x
        elif isinstance(x, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in x.items())
        elif isinstance(x, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(x))


def check_claims(data: Any, path: Path, file_size: int, memory: int | None = None) -> None:
    """Refuse tensors that claim far more memory than the file stores, before anything touches them.

    A tensor made by ``expand`` or ``as_strided`` (stride 0, overlapping views) is saved with
    the few elements its storage has: a 2 KB file can describe a tensor of 10⁹ elements that
    the replay would materialise. Real head outputs own their elements, so all tensors of a
    file together claim at most about its size; beyond twice that (plus :data:`CLAIM_SLACK`
    for small anchor grids) the file is refused, naming the tensor that claims the most. So is a
    file whose tensors alone need more than the machine's ``memory`` (default: its RAM): the replay
    would run out of memory half-way.
    """
    claimed, worst = 0, None
    for where, t in _tensors(data):
        nbytes = t.numel() * t.element_size()
        claimed += nbytes
        excess = nbytes - t.untyped_storage().nbytes()
        if excess > 0 and (worst is None or excess > worst[0]):
            worst = (excess, where, t)
    if worst is None or claimed <= 2 * file_size + CLAIM_SLACK:
        _check_memory(claimed, path, memory)
        return
    _, where, t = worst
    raise BundleError(
        f"{path}: {where} claims {t.numel():,} elements ({t.numel() * t.element_size() / 2**30:.1f} GiB) but the "
        f"file stores {t.untyped_storage().nbytes():,} bytes of them (shape {tuple(t.shape)}, stride "
        f"{t.stride()}: an expand/as_strided view); refused before allocating — save real tensors "
        "(.contiguous() before torch.save)"
    )


def _check_memory(claimed: int, path: Path, memory: int | None) -> None:
    from yolodbg.paths import physical_memory

    memory = physical_memory() if memory is None else memory
    if memory is not None and claimed > memory:
        raise BundleError(
            f"{path}: its tensors hold {claimed / 2**30:.1f} GiB, more than this machine's memory "
            f"({memory / 2**30:.1f} GiB); replay a smaller batch (fewer images per bundle)"
        )


def _read(path: Path) -> Any:
    data = _load(path)
    check_claims(data, path, path.stat().st_size)
    return data


def _load(path: Path) -> Any:
    import torch

    from yolodbg.paths import regular_file

    fix = "pass one .pt bundle written by torch.save or yolodbg capture (yolodbg scan takes folders)"
    regular_file(path, "the bundle", fix, BundleError)
    with path.open("rb") as f:
        magic = f.read(4)
    is_zip = zipfile.is_zipfile(path)
    if not is_zip and not magic.startswith(b"\x80"):
        raise BundleError(f"{path}: not a torch.save file; expected a .pt prediction bundle")
    try:
        if is_zip:
            # map the tensors (private, copy-on-write: the file is never written) instead of copying
            # them; where mapping fails (a file system without mmap, say) they are copied as before
            with contextlib.suppress(RuntimeError, OSError):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        why = lines[0] if lines else (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BundleError(
            f"{path}: refused to load: the file holds Python objects other than tensors, lists and dicts "
            f"({why[:160]}); save plain tensors/dicts (yolodbg.bundle.save) — yolodbg never unpickles code"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(
            f"{path}: not a torch.save file ({msg[:160]}); expected a .pt prediction bundle"
        ) from e


def _guess_head(outputs: Any, where: str) -> str:
    """The head family of a bare output: the one registered family that recognises it."""
    claims = heads.recognise(outputs)
    if len(claims) == 1:
        return claims[0][0]
    if claims:
        raise BundleError(f"{where}: {heads.ambiguity(claims)}")
    raise BundleError(
        f"{where}: cannot tell which head produced these outputs ({_describe(heads.training_part(outputs))}); "
        f"pass --head {'|'.join(heads.names())} or save a canonical bundle with yolodbg.bundle.save"
    )


def _describe(x: Any) -> str:
    import torch

    if isinstance(x, torch.Tensor):
        return f"tensor {tuple(x.shape)}"
    if isinstance(x, dict):
        return "dict with keys " + ", ".join(map(str, list(x)[:8]))
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of {len(x)}: " + ", ".join(_describe(v) for v in list(x)[:4])
    return type(x).__name__


def _batch_size(outputs: Any) -> int | None:
    import torch

    if isinstance(outputs, torch.Tensor):
        return int(outputs.shape[0]) if outputs.ndim else None
    if isinstance(outputs, dict):
        for key in ("one2many", "boxes", "scores"):
            if key in outputs:
                return _batch_size(outputs[key])
        return None
    if isinstance(outputs, (list, tuple)) and outputs:
        if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], dict):
            return _batch_size(outputs[1])
        return _batch_size(outputs[0])
    return None


def _plain(value: Any) -> Any:
    """Tensors and numpy values inside bundle metadata as plain Python numbers and lists."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, str)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


MAX_INPUT = 65536  # largest network input side or stride, in pixels
MAX_ORIGINAL = 1 << 20  # largest original image side, in pixels


def _pair(value: Any, where: str, name: str, limit: int = MAX_INPUT) -> tuple[int, int]:
    """``[height, width]`` (or one size for both) in whole pixels in ``[1, limit]``; else names the field."""
    value = _plain(value)
    values = [value, value] if _is_number(value) else value
    if (
        not isinstance(values, list)
        or len(values) != 2
        or not all(_is_number(v) and 1 <= v <= limit and v == int(v) for v in values)
    ):
        raise BundleError(
            f"{where}: {name} is {value!r}; expected [height, width] in whole pixels from 1 to {limit}"
        )
    return (int(values[0]), int(values[1]))


def _numbers(value: Any, n: int, where: str, name: str, fix: str, *, positive: bool) -> tuple[float, ...]:
    """``n`` finite numbers (> 0 if ``positive``, else ≥ 0) from a number (repeated) or a list of ``n``."""
    value = _plain(value)
    values = [value] * n if _is_number(value) else value
    ok = isinstance(values, list) and len(values) == n and all(_is_number(v) for v in values)
    if not ok or any((v <= 0) if positive else (v < 0) for v in values):
        raise BundleError(f"{where}: {name} is {value!r}; expected {fix}")
    return tuple(float(v) for v in values)


def _letterbox(entry: dict, i: int, where: str) -> Letterbox | None:
    """An image's ``scale``/``pad`` as a Letterbox (None without ``scale``), refused unless finite and sane."""
    if entry.get("scale") is None:
        return None
    sy, sx = _numbers(
        entry["scale"],
        2,
        where,
        f"images[{i}].scale",
        "a finite number > 0 or [scale_y, scale_x]",
        positive=True,
    )
    top, left = _numbers(
        entry.get("pad", (0, 0)),
        2,
        where,
        f"images[{i}].pad",
        "[pad_top, pad_left], finite pixels ≥ 0",
        positive=False,
    )
    return Letterbox(sy, sx, top, left)


def _image_key(value: Any, where: str, name: str, image_ids: list[str] | None) -> Any:
    """An image id as written (a whole number becomes an int); a list, a dict or NaN names the field."""
    value = _plain(value)
    if value is None or (_is_number(value) and value == int(value)) or (isinstance(value, str) and value):
        return int(value) if _is_number(value) else value
    if image_ids is not None:
        return value  # replaced by --image-ids
    raise BundleError(f"{where}: {name} is {value!r}; expected an integer or a non-empty string")


def _strides(value: Any, where: str) -> tuple[float, ...]:
    value = _plain(value)
    n = len(value) if isinstance(value, list) and value else 1
    strides = _numbers(
        value, n, where, "strides", "one finite stride > 0 per level, e.g. [8, 16, 32]", positive=True
    )
    if max(strides) > MAX_INPUT:
        raise BundleError(
            f"{where}: strides {list(strides)} go beyond {MAX_INPUT} pixels; expected e.g. [8, 16, 32]"
        )
    return strides


def _category_ids(value: Any, where: str) -> tuple[int, ...]:
    """The dataset category id of each class index: distinct integers (a repeat would merge two classes)."""
    value = _plain(value)
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        raise BundleError(
            f"{where}: category_ids is {str(value)[:80]}; expected a list of integers, one per class index"
        )
    if len(set(value)) != len(value):
        twice = next(c for c in value if value.count(c) > 1)
        raise BundleError(
            f"{where}: category_ids lists {twice} twice; each class index needs its own category id"
        )
    return tuple(value)


def _images(raw: Any, batch_size: int, where: str, image_ids: list[str] | None) -> tuple[ImageInfo, ...]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise BundleError(
            f"{where}: images is a {type(raw).__name__}; expected a list with one dict per image"
        )
    if raw and len(raw) != batch_size:
        raise BundleError(
            f"{where}: images has {len(raw)} entries but the outputs hold {batch_size} images; "
            "give one entry per batch element"
        )
    if image_ids is not None and len(image_ids) != batch_size:
        raise BundleError(
            f"--image-ids gives {len(image_ids)} ids but {where} holds {batch_size} images; give one per image"
        )
    infos = []
    for i in range(batch_size):
        entry = raw[i] if raw else {}
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: images[{i}] is a {type(entry).__name__}; expected a dict")
        image_id = _image_key(entry.get("image_id"), where, f"images[{i}].image_id", image_ids)
        file_name = entry.get("file_name")
        if file_name is not None and not isinstance(file_name, str):
            raise BundleError(f"{where}: images[{i}].file_name is {file_name!r}; expected a string")
        if image_ids is not None:
            image_id = image_ids[i]
        if isinstance(image_id, str) and image_id.isdigit():
            image_id = int(image_id)
        orig = entry.get("orig_size")
        orig_size = _pair(orig, where, f"images[{i}].orig_size", MAX_ORIGINAL) if orig is not None else None
        letterbox = _letterbox(entry, i, where)
        infos.append(ImageInfo(i, image_id, file_name, orig_size, letterbox))
    return tuple(infos)


def load(
    path: str | os.PathLike,
    *,
    head: str | None = None,
    input_size: tuple[int, int] | None = None,
    strides: tuple[float, ...] | None = None,
    image_ids: list[str] | None = None,
    nc: int | None = None,
    letterbox: str | None = None,
    digest: bool = True,
) -> Bundle:
    """Read and validate a bundle file; options fill what a bare output lacks (CLI ``--head`` etc.).

    ``digest=False`` skips the file's sha256 (``Bundle.digest`` stays None), which only
    snapshots and the JSON report record; a scan of many large bundles does not need it.
    """
    path = Path(path)
    data = _read(path)
    bundle = from_object(
        data,
        head=head,
        input_size=input_size,
        strides=strides,
        image_ids=image_ids,
        nc=nc,
        letterbox=letterbox,
        source=str(path),
    )
    return _replace(bundle, digest=_sha256(path)) if digest else bundle


def _replace(bundle: Bundle, **changes: Any) -> Bundle:
    from dataclasses import replace

    return replace(bundle, **changes)


def from_object(
    data: Any,
    *,
    head: str | None = None,
    input_size: tuple[int, int] | None = None,
    strides: tuple[float, ...] | None = None,
    image_ids: list[str] | None = None,
    nc: int | None = None,
    letterbox: str | None = None,
    source: str = "<memory>",
) -> Bundle:
    """Validate an in-memory bundle (canonical dict or bare head output)."""
    _check_option_names(head, letterbox)
    rec = _recorded(data, head, source)
    # options fill what the file lacks and must agree with what it records (see bundle_options)
    resolved = bundle_options.reconcile(
        head=rec.head,
        outputs=rec.outputs,
        source=source,
        recorded_size=rec.input_size,
        recorded_strides=rec.strides,
        option_size=tuple(input_size) if input_size is not None else None,
        option_strides=tuple(strides) if strides is not None else None,
    )
    bundle_options.check_image_ids(image_ids, rec.images, source)
    batch = _checked_batch(rec.outputs, rec.targets, source)
    cats = _category_ids(rec.category_ids, source) if rec.category_ids is not None else None
    return Bundle(
        head=rec.head,
        outputs=rec.outputs,
        batch_size=batch,
        input_size=resolved.input_size,
        strides=resolved.strides,
        images=_images(rec.images, batch, source, image_ids),
        targets=rec.targets,
        category_ids=cats,
        anchors=rec.anchors,
        meta=dict(rec.meta),
        nc=nc,
        image_ids_given=image_ids is not None,
        letterbox_mode=letterbox,
        source=source,
    )


def _check_option_names(head: str | None, letterbox: str | None) -> None:
    """``--head`` and ``--letterbox`` name a registered family and a known letterbox."""
    if head is not None and head not in heads.names():
        raise BundleError(f"--head {head!r} is not a known head; expected one of {', '.join(heads.names())}")
    if letterbox is not None and letterbox not in LETTERBOX_MODES:
        raise BundleError(
            f"--letterbox {letterbox!r} is not a known letterbox; expected one of {', '.join(LETTERBOX_MODES)}"
        )


@dataclass(frozen=True)
class _Recorded:
    """What a bundle object records, checked field by field, before the options meet it."""

    outputs: Any
    head: str
    input_size: tuple[int, int] | None = None
    strides: tuple[float, ...] | None = None
    meta: dict = field(default_factory=dict)
    images: Any = None
    targets: Any = None
    category_ids: Any = None
    anchors: Any = None


def _recorded(data: Any, head: str | None, source: str) -> _Recorded:
    """The fields of a canonical bundle dict, or a bare head output alone (its family guessed
    unless ``--head`` names it)."""
    canonical = isinstance(data, dict) and "outputs" in data and ("yolodbg" in data or "head" in data)
    if not canonical:
        return _Recorded(outputs=data, head=head or _guess_head(data, source))
    _check_format_version(data, source)
    outputs = data["outputs"]
    file_head = data.get("head")
    if file_head is not None and file_head not in heads.names():
        raise BundleError(f"{source}: head is {file_head!r}; expected one of {', '.join(heads.names())}")
    head = head or file_head or _guess_head(outputs, source)
    size = _pair(data["input_size"], source, "input_size") if data.get("input_size") is not None else None
    strd = _strides(data["strides"], source) if data.get("strides") is not None else None
    meta = data.get("meta")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise BundleError(f"{source}: meta is a {type(meta).__name__}; expected a dict")
    return _Recorded(
        outputs=outputs,
        head=head,
        input_size=size,
        strides=strd,
        meta=meta,
        images=data.get("images"),
        targets=data.get("targets"),
        category_ids=data.get("category_ids"),
        anchors=data.get("anchors"),
    )


def _check_format_version(data: dict, source: str) -> None:
    version = _plain(data.get("yolodbg", FORMAT_VERSION))
    if not _is_number(version) or version != FORMAT_VERSION:
        raise BundleError(
            f"{source}: bundle format version {version!r} is not supported (this yolodbg reads version "
            f"{FORMAT_VERSION}); re-save it with this yolodbg's yolodbg.bundle.save"
        )


def _checked_batch(outputs: Any, targets: Any, source: str) -> int:
    """The batch size of the outputs (which must have one), after checking that targets is a dict."""
    batch = _batch_size(outputs)
    if not batch:
        raise BundleError(
            f"{source}: outputs ({_describe(outputs)}) have no batch dimension; expected the raw train-mode "
            "head output (see docs/design.md, bundle format)"
        )
    if targets is not None and not isinstance(targets, dict):
        raise BundleError(
            f"{source}: targets is a {type(targets).__name__}; expected a dict with batch_idx, cls, bboxes"
        )
    return batch


def _shrink_feats(outputs: Any) -> Any:
    """Replace Ultralytics ``feats`` maps by zero-channel tensors: only their spatial shapes matter."""
    import torch

    if isinstance(outputs, dict):
        out = {}
        for k, v in outputs.items():
            if k == "feats" and isinstance(v, (list, tuple)):
                out[k] = [torch.empty(f.shape[0], 0, *f.shape[2:]) for f in v]
            else:
                out[k] = _shrink_feats(v)
        return out
    if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], dict):
        return _shrink_feats(outputs[1])  # keep only the training dict of (inference, dict)
    return outputs


def _detach(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().contiguous()
    if isinstance(x, dict):
        return {k: _detach(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_detach(v) for v in x]
    return x


def save(
    path: str | os.PathLike,
    outputs: Any,
    *,
    head: str = "ultralytics",
    input_size: tuple[int, int] | None = None,
    strides: list[float] | None = None,
    images: list[dict[str, Any]] | None = None,
    targets: dict[str, Any] | None = None,
    category_ids: list[int] | None = None,
    anchors: Any = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a canonical bundle atomically (temp file + rename); refuses to overwrite unless asked.

    ``outputs`` is the raw train-mode head output; tensors are detached and moved to the CPU,
    and Ultralytics ``feats`` maps are stored as zero-channel tensors of the same spatial size.

    >>> save("preds.pt", model_output, input_size=[640, 640],                  # doctest: +SKIP
    ...      targets={"batch_idx": b["batch_idx"], "cls": b["cls"], "bboxes": b["bboxes"]})
    """
    import torch

    if head not in heads.names():
        raise BundleError(f"head {head!r} is not a known head; expected one of {', '.join(heads.names())}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path}: exists already; pass overwrite=True or choose another name")
    doc: dict[str, Any] = {
        "yolodbg": FORMAT_VERSION,
        "head": head,
        "outputs": _detach(_shrink_feats(outputs)),
    }
    if input_size is not None:
        doc["input_size"] = [int(v) for v in input_size]
    if strides is not None:
        doc["strides"] = [float(s) for s in strides]
    for key, value in (("images", images), ("category_ids", category_ids), ("anchors", anchors)):
        if value is not None:
            doc[key] = _detach(value)
    if targets is not None:
        doc["targets"] = {k: _detach(v) for k, v in targets.items() if k in ("batch_idx", "cls", "bboxes")}
    doc["meta"] = dict(meta or {})
    return atomic_write(
        path,
        lambda f: torch.save(doc, f),
        exclusive=not overwrite,
        exists_fix="pass overwrite=True or choose another name",
    )
