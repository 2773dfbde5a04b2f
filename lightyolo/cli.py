"""`lightyolo COMMAND [args ...]`: the console script, one name for every entry point.

`lightyolo run …` is `python -m lightyolo.run …`, and likewise for each command: the command
names a module, which runs as `__main__` with the same arguments. A command whose module
this install lacks is refused with one line. Every command takes Hydra's `key=value`
overrides, `--help` and `--cfg job` (lightyolo/command.py, docs/configuration.md).
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from collections.abc import Sequence

# command → what it does (the module is lightyolo.<command>).
COMMANDS: dict[str, str] = {
    "run": "train and evaluate one cell, or a Hydra multirun with -m",
    "sweep": "run a named sweep (built-in or from LIGHTYOLO_CONFIG_PATH)",
    "report": "the ablation report of an MLflow experiment",
    "zoo": "params and GFLOPs of every backbone x neck x operator cell",
    "bench": "latency benchmark of trained cells",
    "export": "export a trained cell to ONNX",
    "deploy": "test-split mAP of an experiment's cells through a deployment runtime and precision",
    "import_yolov5": "convert an official YOLOv5 .pt checkpoint into the weights lightyolo loads",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "usage: lightyolo COMMAND [args ...]   (COMMAND --help for its own)\n\ncommands:\n" + "\n".join(lines)


def runnable(module: str) -> bool:
    """Whether `python -m <module>` would find something to run (a module, or a package's __main__)."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{module}.__main__")
    except ModuleNotFoundError:
        return False
    return spec is not None


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        raise SystemExit(0 if args else 2)
    if args[0] == "--version":
        from lightyolo import __version__

        print(f"lightyolo {__version__}")
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"lightyolo: error: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    module = f"lightyolo.{command}"
    if not runnable(module):
        print(
            f"lightyolo: error: command {command!r} needs python -m {module}, which this install does not have",
            file=sys.stderr,
        )
        raise SystemExit(2)
    sys.argv = [sys.argv[0], *rest]  # runpy puts the module's file in argv[0], as python -m does
    runpy.run_module(module, run_name="__main__", alter_sys=True)
