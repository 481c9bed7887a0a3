"""A non-editable install finds the Hydra configs shipped inside the wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_conf_and_an_installed_package_uses_it(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("betavae-*.whl")
    shipped = {
        name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("betavae/conf/")
    }
    in_repo = {f"betavae/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped == in_repo

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    probe = (
        "from hydra import compose, initialize_config_dir\n"
        "from betavae.config.paths import config_dir\n"
        "from betavae.config.schema import register_schemas\n"
        "register_schemas()\n"
        "with initialize_config_dir(str(config_dir()), version_base='1.3'):\n"
        "    print(config_dir(), compose('train', overrides=['model=conv']).model.network)\n"
    )
    # The installed copy goes first on the path, ahead of the checkout's editable install.
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n{probe}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(site / "betavae" / "conf"), "conv"]
