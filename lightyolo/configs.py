"""Where lightyolo's configs live: `conf/` (the groups a run composes) and `sweeps/`.

Every lookup of a config file or group option goes through here, so that configs found
elsewhere (a packaged copy, user directories) need one change in one module.
"""

from __future__ import annotations

from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent

# The config groups a run chooses from, in the order a cell is named.
GROUPS: tuple[str, ...] = ("backbone", "neck", "operator", "dataset")
# The groups that span the model grid (the zoo table).
MODEL_GROUPS: tuple[str, ...] = ("backbone", "neck", "operator")


def config_dir() -> Path:
    """The directory holding `config.yaml` and one folder per group."""
    return _REPO / "conf"


def sweeps_dir() -> Path:
    """The directory of named sweeps (`python -m lightyolo.sweep NAME`)."""
    return _REPO / "sweeps"


def group_files(group: str, conf_dir: Path | None = None) -> list[Path]:
    """The option yamls of `group` (`conf/<group>/*.yaml`), sorted by name."""
    return sorted((Path(conf_dir or config_dir()) / group).glob("*.yaml"))


def group_options(group: str, conf_dir: Path | None = None) -> list[str]:
    """The option names of `group` (the yaml stems), sorted."""
    return [path.stem for path in group_files(group, conf_dir)]


def sweep_names() -> list[str]:
    """The named sweeps, sorted."""
    return sorted(path.stem for path in sweeps_dir().glob("*.yaml"))
