"""The ``yolodbg.cli`` package keeps its shape: a leaf of shared options, commands that never import
each other (at module or function level), no private names across modules, ``--help`` without torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import module_imports

import yolodbg.cli

CLI = Path(yolodbg.cli.__file__).parent
MODULES = {("yolodbg.cli" if p.stem == "__init__" else f"yolodbg.cli.{p.stem}"): p for p in CLI.glob("*.py")}
SHARED = {"yolodbg.cli", "yolodbg.cli.options", "yolodbg.cli.group"}


def _cli_deps(path: Path) -> set[str]:
    """The yolodbg.cli modules a file imports (``from yolodbg.cli import scan`` names the module)."""
    deps = set()
    for module, name in module_imports(path):
        target = f"{module}.{name}" if f"{module}.{name}" in MODULES else module
        if target in MODULES:
            deps.add(target)
    return deps


def test_the_package_has_every_command_module():
    assert set(MODULES) >= SHARED | {
        f"yolodbg.cli.{m}"
        for m in ("explain", "recipes", "compare", "snapshot", "scan", "capture", "validate")
    }


def test_options_is_a_leaf_and_commands_import_only_options():
    assert _cli_deps(MODULES["yolodbg.cli.options"]) == set()
    assert _cli_deps(MODULES["yolodbg.cli.group"]) == {"yolodbg.cli.options"}
    commands = [m for m in MODULES if m not in SHARED]
    assert len(commands) >= 7
    for module in commands:
        assert _cli_deps(MODULES[module]) <= {"yolodbg.cli.options"}, module


def test_no_module_imports_a_private_name_from_another():
    checked = 0
    for module, path in MODULES.items():
        for source, name in module_imports(path):
            checked += 1
            if source.startswith("yolodbg") and name != "__version__":
                assert not name.startswith("_"), f"{module} imports {source}.{name}"
    assert checked > 20


def test_every_command_is_registered_on_the_group():
    from yolodbg.cli import main

    assert sorted(main.commands) == sorted(
        [
            "explain",
            "recipes",
            "compare",
            "snapshot",
            "check",
            "scan",
            "trend",
            "capture",
            "validate",
            "audit",
        ]
    )


def test_help_imports_neither_torch_nor_pycocotools():
    code = (
        "import sys; from yolodbg.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'pycocotools') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(CLI.parents[1])}  # this checkout's yolodbg
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_bundle_spec_records_letterbox_only_when_given_and_fills_from_a_snapshot():
    from yolodbg.cli.options import BundleSpec

    given = BundleSpec(imgsz="384,640", nc=80)
    assert given.recorded() == {
        "head": None,
        "imgsz": "384,640",
        "strides": None,
        "nc": 80,
        "image_ids": None,
    }
    assert BundleSpec(letterbox="yolox").recorded()["letterbox"] == "yolox"
    filled = given.or_recorded({"imgsz": "640", "strides": "8,16,32", "letterbox": "yolov5"})
    assert filled == BundleSpec(imgsz="384,640", strides="8,16,32", nc=80, letterbox="yolov5")
    assert (filled.input_size(), filled.stride_values()) == ((384, 640), (8.0, 16.0, 32.0))
    assert BundleSpec(image_ids=" 1, 2 ,x").image_id_list() == ("1", "2", "x")
    assert BundleSpec().image_id_list() is None


def test_bundle_spec_load_passes_the_parsed_options_to_bundle_load(monkeypatch):
    from yolodbg import bundle
    from yolodbg.cli.options import BundleSpec

    calls = []
    monkeypatch.setattr(bundle, "load", lambda path, **kw: calls.append((path, kw)) or "bundle")
    spec = BundleSpec(head="yolox", imgsz="640", strides="8,16", nc=3, image_ids="7,8", letterbox="yolox")
    assert spec.load(Path("b.pt")) == "bundle"
    assert calls == [
        (
            Path("b.pt"),
            {
                "head": "yolox",
                "input_size": (640, 640),
                "strides": (8.0, 16.0),
                "image_ids": ["7", "8"],
                "nc": 3,
                "letterbox": "yolox",
            },
        )
    ]
