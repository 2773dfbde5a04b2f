"""lightyolo installed like a library: the wheel is built from this checkout, installed
without `-e` into a fresh venv, and run from a directory outside the checkout (the zoo, a
one-cell run on the synthetic dataset, the report), through the `lightyolo` console script.

The fresh venv gets the project's dependencies from this interpreter's site-packages through
a `.pth` line: Python adds that directory to sys.path without running its own `.pth` files, so
an editable install of lightyolo there (its import finder) cannot shadow the installed wheel.
"""

from __future__ import annotations

import io
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
from setuptools import find_packages

from conftest import REPO, tiny_overrides

# What a wheel is built from (everything else in the checkout is not the distribution).
SOURCES = ("pyproject.toml", "README.md", "lightyolo", "conf", "sweeps", "hydra_plugins")


def listed_packages() -> list[str]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_lightyolo_subpackage_is_listed_in_pyproject() -> None:
    missing = set(find_packages(str(REPO), include=["lightyolo*"])) - set(listed_packages())
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points Python or lightyolo at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIGHTYOLO_CONFIG_PATH")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def run(command: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=cwd, env=clean_env(**extra), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command[:3]}… failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout installed (no -e), the deps borrowed."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(source)], root)
    (wheel,) = (root / "dist").glob("lightyolo-*.whl")

    env_dir = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], root)
    python = env_dir / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip())
    dependencies = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    (purelib / "project_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], root)
    return env_dir


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with no checkout in it or above it."""
    directory = tmp_path_factory.mktemp("user")
    assert REPO not in directory.parents
    return directory


def test_the_installed_wheel_is_what_runs_and_carries_the_configs(venv: Path, outside: Path) -> None:
    probe = (
        "import lightyolo, lightyolo.configs as c, hydra_plugins.lightyolo_searchpath as p;"
        "print(lightyolo.__file__); print(c.config_dir()); print(c.sweeps_dir()); print(p.__file__);"
        "print(c.group_options('backbone')); print(c.sweep_names())"
    )
    lines = run([str(venv / "bin" / "python"), "-c", probe], outside).stdout.splitlines()
    package, conf, sweeps, plugin = (Path(line) for line in lines[:4])
    site_packages = package.parent.parent
    assert venv in site_packages.parents and REPO not in package.parents
    assert conf == site_packages / "lightyolo" / "conf" and (conf / "config.yaml").is_file()
    commands = ("_command", "export", "bench", "deploy", "report", "zoo", "import_yolov5")
    assert all((conf / f"{name}.yaml").is_file() for name in commands)  # each command's own config
    assert sweeps == site_packages / "lightyolo" / "sweeps"
    assert plugin == site_packages / "hydra_plugins" / "lightyolo_searchpath.py"
    assert lines[4] == str(["c2f", "c3", "ghost", "mobilenetv3", "shufflenetv2"])
    assert lines[5] == str(["lightweight", "lightweight_slurm", "smoke"])


def test_the_console_script_lists_the_zoo(venv: Path, outside: Path) -> None:
    proc = run([str(venv / "bin" / "lightyolo"), "zoo", "check=false", "img=64", "format=csv"], outside)
    zoo = pd.read_csv(io.StringIO(proc.stdout))
    assert len(zoo) == 5 * 3 * 2
    baseline = zoo[(zoo.backbone == "c3") & (zoo.neck == "pan") & (zoo.operator == "conv")].iloc[0]
    assert baseline["params"] == 1_872_157  # YOLOv5n (docs/references.md)


def test_the_console_script_refuses_an_unknown_command_in_one_line(venv: Path, outside: Path) -> None:
    proc = subprocess.run([str(venv / "bin" / "lightyolo"), "train"], cwd=outside, env=clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "lightyolo: error: unknown command 'train'; commands: run, sweep, report, zoo, bench, export, deploy, import_yolov5"
    )


def test_a_one_cell_run_and_its_report_from_outside_the_checkout(venv: Path, outside: Path) -> None:
    lightyolo = str(venv / "bin" / "lightyolo")
    run([lightyolo, "run", *tiny_overrides(outside), "experiment=installed"], outside)
    store = f"sqlite:///{outside / 'mlflow.db'}"
    run([lightyolo, "report", "experiment=installed", f"tracking_uri={store}", f"out={outside / 'reports'}"], outside)
    variants = pd.read_csv(outside / "reports" / "installed" / "ablation.csv")
    assert variants[["backbone", "neck", "operator", "status"]].values.tolist() == [["c3", "pan", "conv", "completed"]]
    assert list(outside.glob("outputs/*/*/.hydra/config.yaml"))  # Hydra's run dir, under the launch directory
