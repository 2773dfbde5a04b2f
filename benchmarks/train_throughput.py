"""Training throughput of lightyolo's real training loop, in images/s after warm-up.

The setting of YOLOv5's own train.py it is compared with (issue 2): yolov5n, 320 px,
batch 16, coco128 with mosaic on.

    python benchmarks/train_throughput.py [--epochs 3] [--img 320] [--batch 16] [--workers 2]
        [--threads N] [--rounds 2] [--baseline /work/main] [--cpu-amp] [OVERRIDE ...]

Each measurement runs in a fresh subprocess: epoch 1 is warm-up (allocator, first-touch),
the figure is the mean images/s of the later epochs (wall clock), and beside it the CPU
seconds per image of the whole `train` call, the process and its loader workers together
(`time.process_time` + the reaped workers' `getrusage`), which other processes sharing the
cores distort less. `--baseline PATH` (a checkout of other lightyolo code, e.g. today's main)
measures that code too, with PYTHONPATH set to it, alternating with this checkout round by
round, and prints the medians and the ratios. Nothing is evaluated or logged to MLflow.
`--threads N` sets torch's intra-op threads in each measurement (default: torch's own, one per
core): on cores shared with other busy processes, fewer threads than cores can be much
faster, since every parallel region waits for its slowest, descheduled thread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Train the importable lightyolo for `args.epochs` epochs; rate after warm-up, CPU s/image."""
    import gc

    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import lightyolo
    from lightyolo.data.dataset import AugmentHyp, DetectionDataset
    from lightyolo.data.loader import build_dataloader
    from lightyolo.models.detector import build_detector
    from lightyolo.train.loop import train

    if args.threads:
        torch.set_num_threads(args.threads)
    conf = Path(lightyolo.__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("config", overrides=[
            "dataset=coco128", f"dataset.root={args.data}", f"model.scale={args.scale}",
            f"train.img_size={args.img}", f"train.batch_size={args.batch}",
            f"train.epochs={args.epochs}", f"train.eval_interval={args.epochs + 1}",
            "train.nominal_batch_size=64",  # YOLOv5's accumulation, as in its train.py
            *(["train.cpu_amp=true"] if args.cpu_amp else []), *args.overrides,
        ])
    spec = instantiate(cfg.dataset)
    model = build_detector(cfg.backbone, cfg.neck, cfg.operator, scale=args.scale, nc=spec.nc)
    dataset = DetectionDataset(spec.train, args.img, augment=True, hyp=AugmentHyp(**cfg.train.augment),
                               batch_size=args.batch, cache_images=True)
    loader = build_dataloader(dataset, batch_size=args.batch, workers=args.workers, shuffle=True, seed=0)

    def no_eval(_model: torch.nn.Module) -> tuple[dict[str, float], None]:
        return {"map50": 0.0, "map50_95": 0.0}, None

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_start = time.process_time() + children.ru_utime + children.ru_stime
    try:  # the train settings are typed since issue 16; a baseline checkout may predate them
        from lightyolo.train.settings import TrainSettings
        recipe = {"settings": TrainSettings.from_config(cfg.train)}
    except ImportError:
        recipe = {"cfg": cfg.train}
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, loader, **recipe, device=torch.device("cpu"), seed=0,
                       checkpoint_dir=Path(tmp), evaluate=no_eval, on_epoch_end=lambda report: None)
    del loader  # shuts the persistent workers down, so their CPU time is reaped
    gc.collect()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() + children.ru_utime + children.ru_stime - cpu_start
    later = result.history[1:] or result.history
    return {"images_s": sum(r.images for r in later) / sum(r.seconds for r in later),
            "cpu_s_per_image": cpu / sum(r.images for r in result.history),
            "threads": torch.get_num_threads()}


def measure_in(checkout: Path, argv: list[str]) -> dict[str, float]:
    """`measure` in a subprocess importing lightyolo from `checkout`."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, __file__, "--measure-once", *argv], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--scale", default="n")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "coco128"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path, default=None, help="checkout of the code to compare with")
    parser.add_argument("--cpu-amp", action="store_true", help="also measure this checkout with train.cpu_amp=true")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every variant, e.g. backbone=ghost")
    parser.add_argument("--measure-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_once:
        print(json.dumps(measure(args)))
        return
    argv = [f"--epochs={args.epochs}", f"--img={args.img}", f"--batch={args.batch}",
            f"--workers={args.workers}", f"--threads={args.threads}", f"--scale={args.scale}",
            f"--data={args.data}", *args.overrides]
    # variant -> (checkout, extra arguments)
    codes: dict[str, tuple[Path, list[str]]] = {"current": (REPO, [])}
    if args.cpu_amp:
        codes["bf16"] = (REPO, ["--cpu-amp"])
    if args.baseline:
        codes["baseline"] = (args.baseline.resolve(), [])
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    for _ in range(args.rounds):
        for name, (checkout, extra) in reversed(codes.items()):  # baseline first in each round
            results[name].append(measure_in(checkout, argv + extra))
    medians = {}
    for name, rows in results.items():
        rate = statistics.median(r["images_s"] for r in rows)
        cpu = statistics.median(r["cpu_s_per_image"] for r in rows)
        medians[name] = (rate, cpu)
        rounds = ", ".join(f"{r['images_s']:.2f}" for r in rows)
        cell = " ".join(args.overrides) or "c3 pan conv"
        print(f"{cell} scale {args.scale}, {args.img}px batch {args.batch}, {rows[0]['threads']} threads, "
              f"{args.workers} workers, {name:>8} ({codes[name][0]}): {rate:6.2f} images/s after warm-up "
              f"(rounds: {rounds}), {1e3 * cpu:6.1f} CPU ms/image (process + workers, all epochs)")
    if "baseline" in medians:
        rate_b, cpu_b = medians["baseline"]
        for name in [n for n in codes if n != "baseline"]:
            rate_c, cpu_c = medians[name]
            print(f"{name} / baseline: {rate_c / rate_b:.2f}x images/s, {cpu_b / cpu_c:.2f}x less CPU per image")
    if "bf16" in medians:
        (rate_f, cpu_f), (rate_h, cpu_h) = medians["current"], medians["bf16"]
        print(f"bf16 / current: {rate_h / rate_f:.2f}x images/s, {cpu_f / cpu_h:.2f}x less CPU per image")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
