"""The HTML report: self-contained, every GT in the table, overlays inline, escaping, and (where Chromium is
installed) that it loads without console errors and its table sorts."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html import escape

import pytest
from click.testing import CliRunner
from helpers import batch, ultra_output
from PIL import Image

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.explain import explain
from yolodbg.render.html import CSP, render_html, write_html

ROWS = [
    (0, 1, 0.5, 0.5, 0.4, 0.3),
    (0, 2, 0.2, 0.3, 0.1, 0.2),
    (1, 0, 0.7, 0.6, 0.3, 0.5),
    (1, 1, 0.1, 0.9, 0.05, 0.05),
]
EVIL = "<script>alert(1)</script>.jpg"
CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)


@pytest.fixture
def ex(tmp_path):
    images = [{"image_id": 7, "file_name": "a.jpg"}, {"file_name": EVIL}]
    path = bundle.save(
        tmp_path / "p.pt", ultra_output(nc=3), input_size=[128, 128], targets=batch(ROWS), images=images
    )
    return explain(bundle.load(path), top=5)


def _gt_rows(doc: str) -> list[str]:
    table = doc.split("<h2>Ground-truth boxes</h2>")[1].split("</table>")[0]
    return re.findall(r"<tr>.*?</tr>", table.split("<tbody>")[1])


def test_report_is_self_contained(ex):
    doc = render_html(ex)
    assert doc.startswith("<!DOCTYPE html>") and CSP in doc
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", doc)  # nothing to fetch
    assert "<link" not in doc and "@import" not in doc and "url(" not in doc
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc)
    assert len(pngs) == ex.bundle.batch_size
    assert base64.b64decode(pngs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    one = render_html(ex, overlays=1)  # only the costliest image, and a note saying so
    costliest = max(ex.breakdown.images, key=lambda im: im.total)
    assert one.count("data:image/png") == 1 and "The 1 images with the largest loss of 2" in one
    assert f"image {escape(ex.bundle.images[costliest.index].label)}</figcaption>" in one
    assert ex.result.terms, "no terms to look for"
    for term, value in ex.result.terms.items():
        assert f"<td>{term}</td>" in doc and f'data-v="{value!r}"' in doc


def test_gt_table_has_every_gt_sorted_by_contribution(ex):
    rows = _gt_rows(render_html(ex, overlays=0))
    assert len(rows) == len(ROWS)
    shares = [
        float(re.findall(r'data-v="([^"]*)"', r)[-1]) for r in rows
    ]  # the share cell is the last number
    assert shares == sorted(shares, reverse=True)
    assert shares == sorted((g.share for g in ex.breakdown.gts), reverse=True)


def test_names_are_escaped(ex):
    doc = render_html(ex, overlays=0)
    assert EVIL not in doc and "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in doc
    assert doc.count("<script>") == 1  # only the table sorter


def test_explain_html_cli(ex, tmp_path):
    out = tmp_path / "r" / "report.html"
    res = CliRunner().invoke(main, ["explain", str(tmp_path / "p.pt"), "--html", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8").count("data:image/png;base64,") == 2
    assert f"wrote {out}" in res.stderr


def _chromium(tmp_path, url: str, *extra: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run([CHROMIUM, *flags, *extra, url], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_opens_in_headless_chromium_without_console_errors(ex, tmp_path):
    page = write_html(ex, tmp_path / "report.html")
    # a copy whose extra script clicks the "gt" header (sort descending) and records the first row's gt
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>var t = document.querySelectorAll('table.sortable')[1]; t.tHead.rows[0].cells[1].click();"
            "document.documentElement.setAttribute('data-first', t.tBodies[0].rows[0].cells[1].textContent);"
            "</script></body>",
        ),
        encoding="utf-8",
    )
    for path in (page, probe):
        run = _chromium(tmp_path, path.as_uri(), "--dump-dom")
        console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
        assert run.returncode == 0 and not console, "\n".join(console) or run.stderr[-2000:]
        assert 'data-ready="1"' in run.stdout  # the report's script ran to its end
    assert 'data-first="1"' in run.stdout and 'aria-sort="descending"' in run.stdout  # largest gt index first
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=1000,800", "--hide-scrollbars")
    with Image.open(shot) as im:
        assert im.size == (1000, 800)
