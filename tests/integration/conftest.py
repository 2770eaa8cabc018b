"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

#: what a plain ``pip install .`` does not bring: moto comes with the ``localcloud`` extra, and Flask lives
#: in the app's own virtualenv, never in Phoenix's
NOT_IN_A_PLAIN_INSTALL = re.compile(r"^(moto|flask)([-_.]\d.*\.dist-info)?$", re.IGNORECASE)


def bare_env() -> dict[str, str]:
    """The environment without PYTHONPATH: nothing from the checkout, the command must find Phoenix by itself."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def demo_app(repo: Path):
    """``tests/apps/demo_app.py`` served on loopback (a real Flask app), once for a test module."""
    from devtools.flaskapp import FlaskApp

    with FlaskApp("demo_app:app", repo / "tests" / "apps") as served:
        yield served


@pytest.fixture(scope="session")
def installed(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``pip install .`` (no extras) of a clean copy of the checkout.

    Its dependencies come from the test venv through a ``.pth`` pointing at a directory of links to the test
    venv's packages, minus moto (the ``localcloud`` extra) and Flask (the app's, not Phoenix's): so the
    commands meet exactly what a user without the extras has, and nothing is downloaded.
    """
    root = tmp_path_factory.mktemp("pip")
    src = root / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (repo / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, src / name, follow_symlinks=False)
    deps = root / "deps"
    deps.mkdir()
    test_purelib = Path(sysconfig.get_paths()["purelib"])
    for entry in test_purelib.iterdir():
        if not NOT_IN_A_PLAIN_INSTALL.match(entry.name) and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "test_venv.pth").write_text(f"{deps}\n")
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", str(src)], capture_output=True, text=True, env=bare_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    missing = subprocess.run([str(venv / "bin" / "python"), "-c", "import moto"], capture_output=True, env=bare_env())
    assert missing.returncode != 0  # really without the extra
    return venv
