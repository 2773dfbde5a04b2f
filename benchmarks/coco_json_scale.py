"""How long loading a COCO-2017-train-sized json and evaluating a val2017-sized one take.

Writes a synthetic COCO json of COCO 2017 train's size (118,287 images, 860,001 annotations,
polygons of 6..60 points so the file is ~450 MB like the real one, ~1% crowd regions) and an
empty file per image into a temporary directory (deleted afterwards unless --keep), then
measures, each in a fresh process so that peak memory is its own:

- `json.load` of the file (the baseline every reader pays at least once);
- `read_coco_json` on first load (parse + write the cache) and cached load;
- `coco_evaluate` (pycocotools) of val2017-sized ground truth (5,000 images, 36,781
  annotations) against 100 synthetic detections per image (500,000: GT boxes jittered, plus
  random boxes).

    python benchmarks/coco_json_scale.py              # everything (~2-4 min, ~3 GB peak)
    python benchmarks/coco_json_scale.py --scale 0.1  # a tenth of the sizes
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRAIN_IMAGES, TRAIN_ANNOTATIONS = 118_287, 860_001
VAL_IMAGES, VAL_ANNOTATIONS = 5_000, 36_781
CROWD_FRACTION = 0.01
POLYGON_POOL = 2_000  # distinct polygons, reused: writing 40M random floats would dominate


def write_coco_json(path: Path, images_dir: Path | None, n_images: int, n_annotations: int, seed: int = 0) -> None:
    """Stream a synthetic COCO json to `path` (and empty image files into `images_dir`)."""
    rng = np.random.default_rng(seed)
    widths = rng.integers(320, 641, n_images)
    heights = rng.integers(240, 641, n_images)
    polygons = [
        "[[" + ",".join(f"{v:.2f}" for v in rng.uniform(0, 640, 2 * rng.integers(6, 61))) + "]]"
        for _ in range(POLYGON_POOL)
    ]
    ann_images = np.sort(rng.integers(0, n_images, n_annotations))
    categories = [{"supercategory": "thing", "id": i, "name": f"class{i}"} for i in range(1, 91) if i % 9 != 3]
    category_ids = np.array([c["id"] for c in categories])
    with path.open("w") as out:
        out.write('{"info": {"description": "synthetic"}, "licenses": [], "categories": ')
        out.write(json.dumps(categories))
        out.write(', "images": [')
        out.write(",".join(
            f'{{"license": 1, "file_name": "{i + 1:012d}.jpg", "coco_url": "http://x/{i + 1:012d}.jpg", '
            f'"height": {heights[i]}, "width": {widths[i]}, "date_captured": "2013-11-14 17:02:52", "id": {i + 1}}}'
            for i in range(n_images)))
        out.write('], "annotations": [')
        for start in range(0, n_annotations, 100_000):
            stop = min(start + 100_000, n_annotations)
            chunk = ann_images[start:stop]
            w, h = widths[chunk], heights[chunk]
            bw, bh = rng.beta(1.2, 4, len(chunk)) * w + 1, rng.beta(1.2, 4, len(chunk)) * h + 1
            x, y = rng.uniform(0, 1, len(chunk)) * (w - bw), rng.uniform(0, 1, len(chunk)) * (h - bh)
            crowd = rng.random(len(chunk)) < CROWD_FRACTION
            cats = rng.choice(category_ids, len(chunk))
            pool = rng.integers(0, POLYGON_POOL, len(chunk))
            out.write("," if start else "")
            out.write(",".join(
                f'{{"segmentation": {polygons[pool[k]]}, "area": {0.7 * bw[k] * bh[k]:.4f}, '
                f'"iscrowd": {int(crowd[k])}, "image_id": {chunk[k] + 1}, '
                f'"bbox": [{x[k]:.2f}, {y[k]:.2f}, {bw[k]:.2f}, {bh[k]:.2f}], '
                f'"category_id": {cats[k]}, "id": {start + k + 1}}}'
                for k in range(len(chunk))))
        out.write("]}")
    if images_dir is not None:
        images_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n_images):
            (images_dir / f"{i + 1:012d}.jpg").touch()


def synthetic_detections(gt: dict, per_image: int, seed: int = 0) -> list[dict]:
    """`per_image` detections per image: its GT boxes jittered, topped up with random boxes."""
    rng = np.random.default_rng(seed)
    by_image: dict[int, list[dict]] = {}
    for annotation in gt["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    category_ids = [c["id"] for c in gt["categories"]]
    detections = []
    for image in gt["images"]:
        for annotation in by_image.get(image["id"], [])[:per_image]:
            x, y, w, h = annotation["bbox"]
            jx, jy = rng.normal(0, 0.05, 2)
            detections.append({"image_id": image["id"], "category_id": annotation["category_id"],
                               "bbox": [x + jx * w, y + jy * h, w, h], "score": float(rng.uniform(0.3, 1))})
        for _ in range(per_image - min(per_image, len(by_image.get(image["id"], [])))):
            w, h = rng.uniform(8, image["width"] / 2), rng.uniform(8, image["height"] / 2)
            detections.append({"image_id": image["id"], "category_id": int(rng.choice(category_ids)),
                               "bbox": [float(rng.uniform(0, image["width"] - w)), float(rng.uniform(0, image["height"] - h)),
                                        w, h], "score": float(rng.uniform(0, 0.5))})
    return detections


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process: steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(step: str, workdir: Path, per_image: int) -> dict:
    """One measurement in this process (called in a fresh subprocess by `main`)."""
    from lightyolo.data.coco_json import read_coco_json
    from lightyolo.eval.coco import coco_evaluate

    train_json, images = workdir / "instances_train.json", workdir / "images"
    start, cpu_start = time.perf_counter(), cpu_seconds()
    if step == "json_load":
        with train_json.open("rb") as handle:
            content = json.load(handle)
        figures = {"annotations": len(content["annotations"])}
    elif step in ("first_load", "cached_load"):
        records, _, _, _, issues = read_coco_json(images, train_json, cache_dir=workdir / "cache", ground_truth=False)
        figures = {"records": len(records), "boxes": sum(len(r.classes) for r in records), "issues": dict(issues)}
    elif step == "evaluate":
        records, _, _, gt, _ = read_coco_json(images, workdir / "instances_val.json", cache_dir=None)
        detections = synthetic_detections(gt, per_image)
        start, cpu_start = time.perf_counter(), cpu_seconds()
        stats = coco_evaluate(gt, detections)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        copy_start = time.perf_counter()
        copy.deepcopy(gt), copy.deepcopy(detections)  # what coco_evaluate spends on its defensive copies
        figures = {"images": len(gt["images"]), "annotations": len(gt["annotations"]),
                   "detections": len(detections), "map50_95": round(stats.map50_95, 4),
                   "of_which_deepcopy_seconds": round(time.perf_counter() - copy_start, 2)}
        return {"step": step, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                "peak_rss_mb": round(peak_rss_mb()), **figures}
    else:
        raise ValueError(f"unknown step {step!r}")
    return {"step": step, "seconds": round(time.perf_counter() - start, 2),
            "cpu_seconds": round(cpu_seconds() - cpu_start, 2), "peak_rss_mb": round(peak_rss_mb()), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of COCO's sizes to generate")
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args()
    if args.step:
        print(json.dumps(measure(args.step, args.workdir, args.dets_per_image)))
        return

    workdir = Path(tempfile.mkdtemp(prefix="coco_json_scale-", dir=args.workdir))
    try:
        start = time.perf_counter()
        train_json = workdir / "instances_train.json"
        write_coco_json(train_json, workdir / "images", int(TRAIN_IMAGES * args.scale), int(TRAIN_ANNOTATIONS * args.scale))
        # val images are ids 1..5000 of the same folder
        write_coco_json(workdir / "instances_val.json", None, int(VAL_IMAGES * args.scale),
                        int(VAL_ANNOTATIONS * args.scale), seed=1)
        print(json.dumps({"step": "generate", "seconds": round(time.perf_counter() - start, 1),
                          "train_json_mb": round(train_json.stat().st_size / 2**20),
                          "workdir": str(workdir)}), flush=True)
        for step in ("json_load", "first_load", "cached_load", "evaluate"):
            result = subprocess.run(
                [sys.executable, __file__, "--step", step, "--workdir", str(workdir),
                 "--dets-per-image", str(args.dets_per_image)],
                capture_output=True, text=True, check=True,
            )
            print(result.stdout.strip().splitlines()[-1], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
