"""Where lightyolo's configs live: `conf/` (the groups a run composes), `sweeps/` (named
grids), and the user's plugin directories.

Every lookup of a config file, group option or named sweep goes through here.

- Built-ins: in an installed wheel `conf/` and `sweeps/` are package data
  (`lightyolo/conf`, `lightyolo/sweeps`, mapped from the repository's top-level folders at
  build time by pyproject.toml); in a checkout (editable install or PYTHONPATH) they are the
  top-level folders themselves.
- Plugins: `LIGHTYOLO_CONFIG_PATH`, directories separated by `os.pathsep`, each laid out like
  `conf/` (`backbone/`, `neck/`, `operator/`, `dataset/`, `head/`) plus a `sweeps/` folder of named
  grids and a `commands/` folder of command defaults (`commands/bench.yaml`; lightyolo.command). They join every group after the built-ins (Hydra through
  `lightyolo/hydra_searchpath.py`; the zoo, the choice validation and
  `python -m lightyolo.sweep NAME` through `config_dirs` / `sweep_file`).
- Hydra's own `hydra.searchpath=[file://DIR]` on a command line: `config_dirs(argv)` adds
  those directories, so the choice validation accepts the options found there.

When two directories hold an option of the same name the first wins, as in Hydra's search
path: built-ins, then LIGHTYOLO_CONFIG_PATH in order, then hydra.searchpath.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

ENV_CONFIG_PATH = "LIGHTYOLO_CONFIG_PATH"

# The config groups a run chooses from, in the order a cell is named.
GROUPS: tuple[str, ...] = ("backbone", "neck", "operator", "dataset", "head")
# The groups that span the model grid under the default head.
MODEL_GROUPS: tuple[str, ...] = ("backbone", "neck", "operator")
# How a cell is trained, evaluated, timed and recorded: conf/train/, eval/, bench/, tracking/
# (the `mlflow` keys); a choice here changes the config, never the cell's coordinates.
RECIPE_GROUPS: tuple[str, ...] = ("train", "eval", "bench", "tracking")
# The default head (conf/config.yaml): runs named and identified as before heads were a group.
DEFAULT_HEAD = "v5"

_CHECKOUT = Path(__file__).resolve().parent.parent


class ConfigPathError(ValueError):
    """A configured config directory does not exist (one line naming it and who set it)."""


def _builtin(name: str) -> Path:
    """`lightyolo/<name>` of an installed wheel, else the checkout's top-level `<name>/`."""
    packaged = resources.files("lightyolo") / name
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return _CHECKOUT / name


def config_dir() -> Path:
    """The built-in directory holding `config.yaml` and one folder per group."""
    return _builtin("conf")


def sweeps_dir() -> Path:
    """The built-in directory of named sweeps (`python -m lightyolo.sweep NAME`)."""
    return _builtin("sweeps")


def plugin_dirs() -> list[Path]:
    """The directories of LIGHTYOLO_CONFIG_PATH, in order (empty entries ignored)."""
    dirs = []
    for entry in os.environ.get(ENV_CONFIG_PATH, "").split(os.pathsep):
        if not entry.strip():
            continue
        path = Path(entry).expanduser().resolve()
        if not path.is_dir():
            raise ConfigPathError(f"{ENV_CONFIG_PATH}: {entry!r} is not a directory")
        dirs.append(path)
    return dirs


def searchpath_dirs(argv: Sequence[str]) -> list[Path]:
    """The `file://` directories of a `hydra.searchpath=[...]` override in argv.

    `pkg://` entries are resolved to their package directory when importable."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides = [arg for arg in argv if arg.split("=", 1)[0].lstrip("+~") == "hydra.searchpath"]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides[-1:])
    except OverrideParseException:
        return []  # Hydra reports the malformed override itself
    dirs: list[Path] = []
    for override in parsed:
        value = override.value()
        for entry in value if isinstance(value, list) else [value]:
            entry = str(entry)
            if entry.startswith("file://"):
                dirs.append(Path(entry[len("file://"):]).expanduser().resolve())
            elif entry.startswith("pkg://"):
                package = entry[len("pkg://"):].strip("/").replace("/", ".")
                try:
                    located = resources.files(package)
                except ModuleNotFoundError:
                    continue  # Hydra itself reports a missing package
                if isinstance(located, Path):
                    dirs.append(located)
    return dirs


def config_dirs(argv: Sequence[str] = ()) -> list[Path]:
    """Every directory whose groups a run composes, first wins: the built-ins,
    LIGHTYOLO_CONFIG_PATH, then argv's `--config-dir`/`-cd` and `hydra.searchpath` entries."""
    dirs = [config_dir(), *plugin_dirs(), *_argv_config_dirs(argv), *searchpath_dirs(argv)]
    return list(dict.fromkeys(dirs))


def _argv_config_dirs(argv: Sequence[str]) -> list[Path]:
    """Hydra's `-cd DIR` / `--config-dir DIR` / `--config-dir=DIR` (joins the search path too)."""
    dirs = []
    for flag, value in zip(argv, [*argv[1:], ""]):
        if flag in ("-cd", "--config-dir") and value:
            dirs.append(value)
        elif flag.startswith("--config-dir="):
            dirs.append(flag.split("=", 1)[1])
    return [Path(d).expanduser().resolve() for d in dirs]


def _as_dirs(conf_dirs: Path | str | Iterable[Path | str] | None) -> list[Path]:
    if conf_dirs is None:
        return config_dirs()
    if isinstance(conf_dirs, (str, Path)):
        return [Path(conf_dirs)]
    return [Path(d) for d in conf_dirs]


def group_files(group: str, conf_dirs: Path | str | Iterable[Path | str] | None = None) -> list[Path]:
    """The option yamls of `group` (`<dir>/<group>/*.yaml`) across `conf_dirs` (default:
    `config_dirs()`), one per name (the first directory's wins), sorted by name."""
    found: dict[str, Path] = {}
    for directory in _as_dirs(conf_dirs):
        for path in sorted((directory / group).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return [found[name] for name in sorted(found)]


def group_options(group: str, conf_dirs: Path | str | Iterable[Path | str] | None = None) -> list[str]:
    """The option names of `group` (the yaml stems) across `conf_dirs`, sorted."""
    return [path.stem for path in group_files(group, conf_dirs)]


def option_file(group: str, name: str, conf_dirs: Path | str | Iterable[Path | str] | None = None) -> Path:
    """The yaml of option `name` of `group` (e.g. for a CLI that builds one cell by name)."""
    files = {path.stem: path for path in group_files(group, conf_dirs)}
    if name not in files:
        raise ConfigPathError(f"unknown {group} {name!r}; valid {group} options: {', '.join(files)}")
    return files[name]


def sweep_dirs() -> list[Path]:
    """The built-in sweeps folder, then each plugin directory's `sweeps/`."""
    return [sweeps_dir(), *(d / "sweeps" for d in plugin_dirs() if (d / "sweeps").is_dir())]


def sweep_files() -> dict[str, Path]:
    """Named sweep → its yaml, across `sweep_dirs()` (the first of a name wins), sorted by name."""
    found: dict[str, Path] = {}
    for directory in sweep_dirs():
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def sweep_names() -> list[str]:
    """The named sweeps, sorted."""
    return list(sweep_files())


def sweep_file(name: str) -> Path | None:
    """The yaml of the named sweep `name`, or None."""
    return sweep_files().get(name)


# --- A config from a store or a file is data, not code (issue 24) ---------------------------


class UnregisteredTargetError(ValueError):
    """A config names a `_target_` that no registered option yaml names (refused unimported)."""


def _targets_in(node: object) -> set[str]:
    """Every `_target_` value in a nested mapping / list."""
    if isinstance(node, Mapping):
        found = {str(node["_target_"])} if "_target_" in node else set()
        for value in node.values():
            found |= _targets_in(value)
        return found
    if isinstance(node, (list, tuple)):
        return set().union(*(_targets_in(value) for value in node)) if node else set()
    return set()


def registered_targets(group: str, conf_dirs: Path | str | Iterable[Path | str] | None = None) -> set[str]:
    """The `_target_`s the option yamls of `group` name (built-ins and LIGHTYOLO_CONFIG_PATH's)."""
    import yaml

    found: set[str] = set()
    for path in group_files(group, conf_dirs):
        try:
            found |= _targets_in(yaml.safe_load(path.read_text()))
        except (OSError, yaml.YAMLError):
            continue  # a broken option yaml registers nothing
    return found


def check_registered_targets(
    config: Mapping, source: str, groups: Sequence[str] = MODEL_GROUPS,
    conf_dirs: Path | str | Iterable[Path | str] | None = None,
) -> None:
    """Refuse, in one line naming `source`, a config whose `groups` nodes name a `_target_` that
    no registered option of that group names (or none at all), before anything is imported:
    a run's config.yaml from a shared tracking server must not run code on the machine that
    benches or exports it."""
    for group in groups:
        node = config.get(group)
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise UnregisteredTargetError(
                f"{source}: config node {group!r} has no `_target_` (expected a run's resolved config.yaml)"
            )
        known = registered_targets(group, conf_dirs)
        unknown = sorted(_targets_in(node) - known)
        if unknown:
            raise UnregisteredTargetError(
                f"{source}: {group} `_target_` {unknown[0]!r} is not a registered {group} "
                f"(registered: {', '.join(sorted(known))}; a yaml in a LIGHTYOLO_CONFIG_PATH directory "
                "registers one); refused without importing it"
            )
