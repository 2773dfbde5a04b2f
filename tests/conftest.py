"""Shared fixtures: composing the real Hydra config, and paths to ../shared."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lightyolo.configs import config_dir

# Fixtures that start real servers (tests/servers.py): tracking_server, postgres_store, mlflow_ui.
pytest_plugins = ["servers"]

# One intra-op thread per process, for this process and the sweeps it starts (set before any
# test module imports torch): the models under test are tiny, and two processes each spinning
# two OpenMP threads on a 2-core machine stall each other for seconds. OMP_NUM_THREADS overrides.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The tests compose the built-in groups only; a test that wants plugin dirs sets this itself.
os.environ.pop("LIGHTYOLO_CONFIG_PATH", None)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = config_dir()  # the checkout's conf/, or an installed wheel's lightyolo/conf
# The project's shared files (real COCO images, official weights, reference outputs): beside
# the checkout, or where LIGHTYOLO_SHARED_DIR says. A user's clone has none of them; the tests
# that read them carry `@pytest.mark.shared("path", ...)` and skip there with the reason
# (docs/testing.md). With LIGHTYOLO_REQUIRE_SHARED=1 (.ci/run sets it) a missing file fails.
SHARED = Path(os.environ.get("LIGHTYOLO_SHARED_DIR") or REPO.parent / "shared")
COCO128 = SHARED / "data" / "coco128"
YOLOV5N_WEIGHTS = SHARED / "weights" / "yolov5n.state_dict.pt"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shared(*paths): reads these paths under the shared files (skips where they are missing)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or, where the shared files are required, fail) a test whose shared files are missing,
    before any of its fixtures reads them."""
    wanted = [path for mark in item.iter_markers("shared") for path in mark.args]
    missing = [path for path in wanted if not (SHARED / path).exists()]
    if not missing:
        return
    reason = (
        f"needs the shared files {', '.join(missing)} under {SHARED} "
        "(set LIGHTYOLO_SHARED_DIR; docs/testing.md says where they come from)"
    )
    if os.environ.get("LIGHTYOLO_REQUIRE_SHARED") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def compose_config(overrides: list[str], config_dir: Path = CONF_DIR, name: str = "config") -> DictConfig:
    """The config `python -m lightyolo.run <overrides>` would run, Hydra node included."""
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=True)


def tiny_overrides(tmp_path: Path) -> list[str]:
    """A run that takes seconds: a few tiny synthetic images (with a test split), one epoch,
    a short benchmark."""
    return [
        f"dataset.root={tmp_path / 'shapes'}",
        "dataset.num_train=16",
        "dataset.num_val=8",
        "dataset.num_test=8",
        "dataset.image_size=96",
        "train.img_size=64",
        "train.batch_size=8",
        "train.epochs=1",
        "train.workers=0",
        "eval.batch_size=8",
        "bench.warmup=1",
        "bench.iters=2",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_config with the tiny budget, plus any extra overrides."""

    def make(*extra: str) -> DictConfig:
        return compose_config(tiny_overrides(tmp_path) + list(extra))

    return make


@pytest.fixture(autouse=True)
def _sigchld_left_as_found():
    """Each test leaves SIGCHLD as it found it. The first DataLoader with worker processes
    makes torch install a process-wide Python SIGCHLD handler (its worker watchdog) and never
    remove it; in a test process that later loaded OpenVINO and ncnn, the next child's exit
    (pnnx converting an export) was then answered by the kernel with a SIGSEGV (si_code
    SI_KERNEL, at the syscall the main thread waited in) — docs/deployment.md, "Known
    problems". torch reinstalls its watchdog with the next loader that uses workers."""
    import signal

    from torch.utils.data._utils import signal_handling

    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before:
        signal.signal(signal.SIGCHLD, before)
        signal_handling._SIGCHLD_handler_set = False
