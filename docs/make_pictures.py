"""Make the README's pictures from the shipped sample: docs/overlay.png and docs/report.png.

    python docs/make_pictures.py            # from anywhere; paths are taken from the repository root

Both come from ``yolodbg explain sample_data/yolov8n_val.pt --gt sample_data/coco_val.json``:

- ``overlay.png`` is the overlay of the first image of the batch (COCO image 1, ``val_000.jpg``),
  exactly what ``--plot`` writes for it;
- ``report.png`` is the top of the ``--html`` page, as headless Chromium shows it in a 1100×1000
  window (install ``chromium`` to remake it; without it only the overlay is remade).

Each PNG records where it came from in text chunks (``yolodbg:*``: the sample files and their
sha256, the image, its loss and the batch total), so ``tests/test_docs_pictures.py`` can tell a
picture of another model or an older sample from a current one. Rerun this script whenever the
sample data or the drawing changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "sample_data/yolov8n_val.pt"  # paths as the pages show them: relative to the repository root
GT = "sample_data/coco_val.json"
IMAGE = 0  # batch index of the image drawn in overlay.png
OVERLAY, REPORT = ROOT / "docs" / "overlay.png", ROOT / "docs" / "report.png"
WINDOW = (1100, 1000)  # the browser window of report.png, in CSS pixels
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def sha256(path: str | Path) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def sample_explanation():
    """What ``yolodbg explain SAMPLE --gt GT`` computes (run from the repository root)."""
    from yolodbg import bundle
    from yolodbg.explain import explain

    return explain(bundle.load(SAMPLE), GT)


def provenance(ex, image: int = IMAGE) -> dict[str, str]:
    """The text chunks a picture carries: its inputs (with digests) and the numbers it shows."""
    info = ex.bundle.images[image]
    return {
        "yolodbg:made_by": "docs/make_pictures.py",
        "yolodbg:bundle": SAMPLE,
        "yolodbg:bundle_sha256": sha256(SAMPLE),
        "yolodbg:gt": GT,
        "yolodbg:gt_sha256": sha256(GT),
        "yolodbg:image": info.label,
        "yolodbg:image_loss": repr(ex.breakdown.images[image].total),
        "yolodbg:total": repr(ex.breakdown.total),
    }


def overlay_picture(ex) -> Image.Image:
    """The overlay of image ``IMAGE``, drawn as ``explain --plot`` draws it."""
    from yolodbg.render import overlay

    roots, names = overlay.image_roots(None, GT), overlay.class_labels(ex)
    return overlay.render_overlay(ex, IMAGE, roots=roots, names=names)


def chromium() -> str | None:
    return next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)


def report_picture(ex, browser: str) -> Image.Image:
    """The top of the ``--html`` report in a ``WINDOW`` browser window."""
    from yolodbg.render import html, overlay

    with tempfile.TemporaryDirectory() as tmp:
        page, shot = Path(tmp) / "report.html", Path(tmp) / "report.png"
        html.write_html(ex, page, roots=overlay.image_roots(None, GT), names=overlay.class_labels(ex))
        flags = [
            *CHROMIUM_FLAGS,
            f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
        ]
        subprocess.run(
            [browser, *flags, f"--screenshot={shot}", page.as_uri()],
            check=True,
            capture_output=True,
            timeout=180,
        )
        with Image.open(shot) as im:
            return im.convert("RGB")


def save(picture: Image.Image, path: Path, text: dict[str, str]) -> None:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    picture.save(path, format="PNG", optimize=True, pnginfo=info)
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


def main() -> int:
    os.chdir(ROOT)  # the report shows the paths as given: relative to the repository root
    sys.path.insert(0, str(ROOT))
    ex = sample_explanation()
    save(overlay_picture(ex), OVERLAY, provenance(ex))
    browser = chromium()
    if browser is None:
        print(f"no chromium found: {REPORT.relative_to(ROOT)} left as it is", file=sys.stderr)
        return 1
    save(report_picture(ex, browser), REPORT, provenance(ex))
    return 0


if __name__ == "__main__":
    sys.exit(main())
