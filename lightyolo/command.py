"""The one calling convention of the commands beside `run` (export, bench, deploy, report,
zoo, import_yolov5): `lightyolo <command> [key=value ...]`, composed by Hydra from
`conf/<command>.yaml` (docs/configuration.md).

Hydra answers `--help`, `--cfg job`, `--info` and joins LIGHTYOLO_CONFIG_PATH's directories
(lightyolo/hydra_searchpath.py); a directory's `commands/<command>.yaml` sets that command's
defaults. `conf/_command.yaml` keeps Hydra from making folders, changing directory or
touching logging. What Hydra would report in several lines and exit status 1 is said here
first in one, with exit status 2: an unknown key, an argument that is no key=value, an
empty value, a malformed override.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, Iterator

import hydra
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

from lightyolo import hydra_searchpath
from lightyolo.configs import ConfigPathError, config_dir, plugin_dirs


class UsageError(ValueError):
    """A bad argument or value of a command, in one line (exit status 2)."""


@cache
def config_keys(name: str) -> dict[str, bool]:
    """The keys of `conf/<name>.yaml` (not `defaults`, `hydra`), each with whether it is a list."""
    config = OmegaConf.to_container(OmegaConf.load(config_dir() / f"{name}.yaml"), resolve=False)
    return {str(key): isinstance(value, list) for key, value in config.items() if key not in ("defaults", "hydra")}


def checked_overrides(name: str, overrides: Sequence[str]) -> list[str]:
    """`overrides` as Hydra gets them: each key one of `name`'s; a list key's `a,b` or `a`
    written `[a,b]` / `[a]` (which Hydra would take for a sweep or a string); no sweep.
    UsageError naming the first bad one."""
    keys = config_keys(name)
    valid = ", ".join(keys)
    parser = OverridesParser.create()
    checked = []
    for argument in overrides:
        key, sep, value = argument.partition("=")
        root = key.lstrip("+~").split(".")[0].split("/")[0]
        if root == "hydra":  # Hydra's own settings (hydra.searchpath=…): Hydra checks them
            checked.append(argument)
            continue
        if not sep:
            raise UsageError(f"argument {argument!r}: expected key=value (valid keys: {valid})")
        if root not in keys or key.startswith(("+", "~")):
            raise UsageError(f"unknown key {key.lstrip('+~')!r} (valid keys: {valid})")
        if not value:
            raise UsageError(f"{key}= is empty: give a value")
        if keys[root] and key == root and not value.startswith("["):
            argument = f"{key}=[{value}]"
        try:
            sweep = parser.parse_override(argument).is_sweep_override()
        except HydraException as err:  # OverrideParseException, or the grammar's own
            raise UsageError(f"argument {argument!r}: {str(err).splitlines()[-1].strip()}") from None
        if sweep:
            raise UsageError(f"{argument}: one value expected (quote it: {key}=\'{value}\')")
        checked.append(argument)
    return checked


def checked_argv(name: str, argv: Sequence[str]) -> list[str]:
    """argv with its overrides checked (`checked_overrides`), Hydra's flags left in place."""
    try:
        plugin_dirs()  # a LIGHTYOLO_CONFIG_PATH entry that is no directory, in one line
    except ConfigPathError as err:
        raise UsageError(str(err)) from None
    # Hydra's own argument parser (the one hydra.main uses) tells overrides from its flags:
    # the value of `--cfg job` or `-cn NAME` is no override.
    from hydra._internal.utils import get_args_parser

    parsed = get_args_parser().parse_args(list(argv))
    if parsed.multirun:  # Hydra's launcher would write multirun.yaml into the working directory
        raise UsageError("-m: a command runs once (a loop in your shell runs it for several values)")
    overrides = iter(checked_overrides(name, parsed.overrides))
    return [next(overrides) if arg in parsed.overrides else arg for arg in argv]


@contextmanager
def _argv(args: list[str]) -> Iterator[None]:
    """sys.argv as `args` for the duration (hydra.main reads its arguments there)."""
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        yield
    finally:
        sys.argv = saved


def run(
    name: str,
    argv: Sequence[str] | None,
    task: Callable[[DictConfig], None],
    *,
    label: str,
    errors: tuple[type[Exception], ...] = (),
    exit_code: Callable[[Exception], int] = lambda err: 2,
) -> int:
    """A command's `main`: `task(cfg)` on the composed `conf/<name>.yaml`; a UsageError or
    one of `errors` becomes one line `<label>: <message>` on stderr and `exit_code(err)`
    (2 for a UsageError). Returns the exit status (Hydra's own for `--help` and its errors)."""

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=name)
    def job(cfg: DictConfig) -> None:
        try:
            task(cfg)
        except (UsageError, *errors) as err:
            print(f"{label}: {err}", file=sys.stderr)
            raise SystemExit(2 if isinstance(err, UsageError) else exit_code(err)) from None

    try:
        args = checked_argv(name, sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"{label}: {err}", file=sys.stderr)
        return 2
    hydra_searchpath.register()
    try:
        with _argv(args):
            job()
    except SystemExit as stop:  # --help, Hydra's errors and the task's own exit status
        return stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    return 0


def compose(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """`conf/<name>.yaml` composed with `overrides` as the command would compose it
    (LIGHTYOLO_CONFIG_PATH included), for code that builds a command's settings itself."""
    overrides = checked_overrides(name, overrides)
    hydra_searchpath.register()
    GlobalHydra.instance().clear()  # an earlier command of this process leaves Hydra set up
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir()), job_name=name):
        return hydra_compose(config_name=name, overrides=overrides)


# --- typed values of a composed config, each refused in one line naming its key -------------


def integer(cfg: DictConfig, key: str, low: int | None = None) -> int | None:
    """cfg[key] as an int (None stays None), at least `low`."""
    value = cfg[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{key}={value!r}: expected an integer")
    if low is not None and value < low:
        raise UsageError(f"{key}={value}: expected >= {low}")
    return value


def boolean(cfg: DictConfig, key: str) -> bool:
    value = cfg[key]
    if not isinstance(value, bool):
        raise UsageError(f"{key}={value!r}: expected true or false")
    return value


def text(cfg: DictConfig, key: str) -> str | None:
    """cfg[key] as a string (Hydra reads `experiment=123` as a number), None stays None."""
    value = cfg[key]
    return None if value is None else str(value)


def names(cfg: DictConfig, key: str) -> tuple[str, ...]:
    """A list key as a tuple of strings."""
    value: Any = cfg[key]
    return tuple(str(v) for v in (value if isinstance(value, ListConfig) else [value]))


def choice(cfg: DictConfig, key: str, options: Sequence[str]) -> str:
    value = text(cfg, key)
    if value not in options:
        raise UsageError(f"{key}={value!r}: invalid choice (choose from {', '.join(options)})")
    return value


def required(cfg: DictConfig, key: str, message: str) -> None:
    """UsageError(`message`) when cfg[key] is still `???` (no default, not given)."""
    if OmegaConf.is_missing(cfg, key):
        raise UsageError(message)
