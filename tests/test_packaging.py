"""A real install (`pip install /path/to/llmproxy`, the README's "Run as a service") works without the checkout.

The tests run from an editable install, which finds schema/ in the checkout; a wheel has no checkout
beside it. Found running the unit under systemd: `llmproxy check` in ExecStartPre died with
FileNotFoundError on .../site-packages/schema/router.schema.json.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setup.py build_py needs setuptools in this venv")
def test_the_built_package_carries_the_schema_and_checks_a_config_without_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    src.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("llmproxy", "schema"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    # build_py is the step of a wheel's build (pip install, pip wheel) that lays out the package
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "site")], cwd=src, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "llmproxy" / "router.schema.json").read_bytes() == (REPO / "schema" / "router.schema.json").read_bytes()
    # the installed package alone (its dependencies from this venv), run from elsewhere: it finds its schema
    cfg = tmp_path / "router.yaml"
    cfg.write_text("listen: 127.0.0.1:4000\nbackends: {m: {api: openai, url: 'http://127.0.0.1:4010/v1'}}\nmodels: {x: {backend: m}}\n")
    code = "import sys; sys.path.insert(0, sys.argv[1]); import llmproxy.config as c; assert c.SCHEMA_PATH.parent.parent == __import__('pathlib').Path(sys.argv[1]).resolve(), c.SCHEMA_PATH; c.load_config(sys.argv[2])"
    ran = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site"), str(cfg)], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
