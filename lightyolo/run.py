"""`python -m lightyolo.run [-m] key=value ...`: the Hydra face of `lightyolo.pipeline.run`."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from lightyolo import pipeline
from lightyolo.tracking import default_tracking_uri

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CHECKED_GROUPS = ("backbone", "neck", "operator", "dataset")


def unknown_choice_error(argv: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """A one-line error for `group=value` overrides naming no yaml in conf/<group>/.

    Hydra's own message spans several lines; this one names the valid options."""
    for arg in argv:
        group, sep, value = arg.partition("=")
        if not sep or group not in CHECKED_GROUPS or "(" in value:
            continue  # not a group choice, or a sweep function like choice(...)
        valid = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for option in value.split(","):
            if option not in valid:
                return (
                    f"error: unknown {group} {option!r} in '{arg}'; "
                    f"valid {group} options: {', '.join(valid)}"
                )
    return None


def _absolute(path: str | None, base: Path) -> str | None:
    """Resolve a user path against the launch directory (jobs may run elsewhere)."""
    if not path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    launch_dir = Path(hydra_cfg.runtime.cwd)
    with open_dict(cfg):
        cfg.dataset.root = _absolute(cfg.dataset.root, launch_dir)
        cfg.model.weights = _absolute(cfg.model.weights, launch_dir)
        if not cfg.mlflow.tracking_uri:
            cfg.mlflow.tracking_uri = default_tracking_uri(launch_dir)
    sweep_id = str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else ""
    result = pipeline.run(cfg, output_dir=Path(hydra_cfg.runtime.output_dir), sweep_id=sweep_id)
    return result.metrics.get("map50_95", 0.0)


def cli() -> None:
    error = unknown_choice_error(sys.argv[1:])
    if error:
        print(error, file=sys.stderr)
        raise SystemExit(2)
    main()


if __name__ == "__main__":
    cli()
