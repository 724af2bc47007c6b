"""The templates ship inside the wheel and are found from an installed copy."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_wheel_carries_templates_and_finds_them_installed(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = wheels.glob("aggregator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "aggregator/_templates/digest.html.j2" in names
    assert "aggregator/_templates/digest.txt.j2" in names

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    probe = (
        "import aggregator.render._environment as e; "
        "env = e.make_environment(); "
        "print(env.get_template('digest.html.j2').filename)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: its templates/ must not be what is found
        env={**os.environ, "PYTHONPATH": str(target)},
        check=True,
    )
    assert result.stdout.strip() == str(target / "aggregator" / "_templates" / "digest.html.j2")
