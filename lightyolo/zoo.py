"""`python -m lightyolo.zoo --scale s --img 640 [--head v5|v8|all] [--format markdown|csv] [--nc 80]`: the zoo table.

Builds every backbone × neck × operator cell found in `conf/` (and LIGHTYOLO_CONFIG_PATH)
with the chosen head (default v5; `all`: every head in conf/head) on the CPU and prints its size
(lightyolo.measure.zoo): params, GFLOPs at the real input size, backbone/neck/head split and
output strides. Reads no data and trains nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from lightyolo.configs import DEFAULT_HEAD, group_options
from lightyolo.models.contracts import ContractError
from lightyolo.models.detector import SCALES
from lightyolo.measure.zoo import TABLE_FORMATS, format_table, zoo_rows

CONVENTIONS = (
    "params: trainable parameters (plus the v8 head's 16 fixed DFL weights, as ultralytics counts them), "
    "BatchNorm unfused; GFLOPs: 2 × multiply-accumulates of "
    "convolutions and linear layers with BatchNorm folded, plus Involution's aggregation "
    "(thop; the check column is torch's FlopCounterMode), batch 1 (docs/references.md)"
)


def _image_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if size < 32 or size % 32:
        raise argparse.ArgumentTypeError(f"expected a positive multiple of 32 (the largest stride), got {size}")
    return size


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lightyolo.zoo", description="Size of every backbone × neck × operator cell in conf/."
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="n", help="YOLOv5 scale (default n)")
    parser.add_argument("--img", type=_image_size, default=640, help="square input size in pixels (default 640)")
    parser.add_argument("--format", choices=TABLE_FORMATS, default="markdown", help="output format")
    parser.add_argument(
        "--head", choices=[*group_options("head"), "all"], default=DEFAULT_HEAD,
        help=f"the head every cell gets (default {DEFAULT_HEAD}); all = one row per head",
    )
    parser.add_argument("--nc", type=_positive_int, default=80, help="number of classes (default 80)")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch intra-op threads (default 1: the models are small, and extra threads on busy cores slow it down)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the FlopCounterMode cross-check (about twice as fast)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    try:
        rows = zoo_rows(args.scale, args.img, args.nc, check=not args.no_check, head=args.head)
    except (FileNotFoundError, ValueError, ContractError) as error:  # a missing, malformed or contract-breaking variant
        print(f"python -m lightyolo.zoo: error: {error}", file=sys.stderr)
        return 2
    if args.format == "markdown":
        print(f"Zoo at scale {args.scale}, {args.img}×{args.img}, nc {args.nc}, head {args.head}. {CONVENTIONS}.\n")
    print(format_table(rows, args.format), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
