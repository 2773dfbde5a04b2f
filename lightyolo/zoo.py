"""`lightyolo zoo [scale=s img=640 heads=v5|v8|all format=markdown|csv nc=80 threads=1 check=true]`
(conf/zoo.yaml): the zoo table.

Builds every backbone × neck × operator cell found in `conf/` (and LIGHTYOLO_CONFIG_PATH)
with the chosen head (default v5; `all`: every head in conf/head) on the CPU and prints its size
(lightyolo.measure.zoo): params, GFLOPs at the real input size, backbone/neck/head split and
output strides. Reads no data and trains nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from lightyolo import command
from lightyolo.configs import group_options
from lightyolo.models.contracts import ContractError
from lightyolo.models.detector import SCALES
from lightyolo.measure.zoo import TABLE_FORMATS, format_table, zoo_rows

CONVENTIONS = (
    "params: trainable parameters (plus the v8 head's 16 fixed DFL weights, as ultralytics counts them), "
    "BatchNorm unfused; GFLOPs: 2 × multiply-accumulates of "
    "convolutions and linear layers with BatchNorm folded, plus Involution's aggregation "
    "(thop; the check column is torch's FlopCounterMode), batch 1 (docs/references.md)"
)


@dataclass(frozen=True)
class ZooOptions:
    scale: str
    img: int
    format: str
    heads: str
    nc: int
    threads: int
    check: bool


def zoo_options(cfg: DictConfig) -> ZooOptions:
    """The composed `conf/zoo.yaml` → ZooOptions; a UsageError naming a bad value."""
    img = command.integer(cfg, "img")
    if img < 32 or img % 32:
        raise command.UsageError(f"img={img}: expected a positive multiple of 32 (the largest stride)")
    return ZooOptions(
        scale=command.choice(cfg, "scale", sorted(SCALES)), img=img,
        format=command.choice(cfg, "format", TABLE_FORMATS),
        heads=command.choice(cfg, "heads", [*group_options("head"), "all"]),
        nc=command.integer(cfg, "nc", 1), threads=command.integer(cfg, "threads", 1),
        check=command.boolean(cfg, "check"),
    )


def print_zoo(cfg: DictConfig) -> None:
    options = zoo_options(cfg)
    torch.set_num_threads(options.threads)
    rows = zoo_rows(options.scale, options.img, options.nc, check=options.check, head=options.heads)
    if options.format == "markdown":
        print(f"Zoo at scale {options.scale}, {options.img}×{options.img}, nc {options.nc}, "
              f"head {options.heads}. {CONVENTIONS}.\n")
    print(format_table(rows, options.format), end="")


def main(argv: Sequence[str] | None = None) -> int:
    """`lightyolo zoo [key=value ...]`; a missing, malformed or contract-breaking variant is one line."""
    return command.run(
        "zoo", argv, print_zoo, label="python -m lightyolo.zoo: error",
        errors=(FileNotFoundError, ValueError, ContractError),
    )


if __name__ == "__main__":
    raise SystemExit(main())
