"""Cell identity end to end (issue 11, part 1): which reruns `pipeline.run` skips, through
real Hydra configs, real MLflow stores and real COCO evaluations (eval-only runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightyolo import identity, pipeline, settings
from lightyolo.store.client import Store
from lightyolo.store.runs import cell_params, flatten

from conftest import COCO128, YOLOV5N_WEIGHTS, compose_config

OTHER_CODE = "0.0.0+src.000000000000"


def coco128_subset(root: Path, stems: list[str]) -> Path:
    """A coco128-layout folder (images/, labels/, data.yaml) of symlinks to some of its images."""
    for kind, ext in (("images", ".jpg"), ("labels", ".txt")):
        folder = root / kind / "train2017"
        folder.mkdir(parents=True)
        for stem in stems:
            source = COCO128 / kind / "train2017" / f"{stem}{ext}"
            if source.exists():  # a few coco128 images have no objects, hence no label file
                (folder / source.name).symlink_to(source)
    (root / "data.yaml").symlink_to(COCO128 / "data.yaml")
    return root


def eval_only(tmp_path: Path, *extra: str) -> list[str]:
    """Overrides of an evaluation-only run at 64 px (seconds)."""
    return [
        "train.epochs=0", "train.img_size=64", "train.workers=0", "eval.batch_size=8",
        "bench.warmup=1", "bench.iters=2", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        *extra,
    ]


def coco128_at(tmp_path: Path, root: Path):
    """An eval-only `dataset=coco128 dataset.root=<root>` config."""
    cache = f"dataset.cache_dir={tmp_path / 'check'}"
    return compose_config(eval_only(tmp_path, "dataset=coco128", f"dataset.root={root}", cache))


def runs(tmp_path: Path):
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}").runs_frame("lightyolo")


@pytest.mark.shared("data/coco128")
def test_another_dataset_root_with_other_images_is_not_skipped(tmp_path: Path) -> None:
    stems = sorted(p.stem for p in (COCO128 / "images" / "train2017").glob("*.jpg"))
    a = coco128_subset(tmp_path / "A", stems[:20])
    b = coco128_subset(tmp_path / "B", stems[20:40])
    first = pipeline.run(coco128_at(tmp_path, a))
    second = pipeline.run(coco128_at(tmp_path, b))
    assert (first.status, second.status) == ("completed", "completed")
    logged = runs(tmp_path)
    assert len(logged) == 2 and logged["tags.dataset_fingerprint"].nunique() == 2
    assert logged["tags.config_hash"].nunique() == 2
    # The same 20 images under another root are the same cell.
    moved = coco128_subset(tmp_path / "A-moved", stems[:20])
    again = pipeline.run(coco128_at(tmp_path, moved))
    assert (again.status, again.run_id) == ("skipped", first.run_id)


@pytest.mark.shared("data/coco128", "weights/yolov5n.state_dict.pt")
def test_other_weights_under_the_same_path_are_not_skipped(tiny_config, tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    # yolov5n without its 80-class Detect convs (the shapes model has 4 classes)
    state = {k: v for k, v in torch.load(YOLOV5N_WEIGHTS, weights_only=True).items() if ".24.m." not in k}
    torch.save(state, weights)
    cfg = tiny_config("train.epochs=0", f"model.weights={weights}")
    first = pipeline.run(cfg)
    assert pipeline.run(cfg).status == "skipped"
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 0.01
    torch.save(state, weights)
    second = pipeline.run(cfg)
    assert second.status == "completed" and second.run_id != first.run_id
    assert runs(tmp_path)["tags.weights_digest"].nunique() == 2


@pytest.mark.shared("data/coco128")
def test_threads_and_bench_settings_keep_the_completed_cell(tiny_config) -> None:
    first = pipeline.run(tiny_config("train.epochs=0"))
    moved = pipeline.run(tiny_config("train.epochs=0", "train.threads=1", "bench.iters=3", "bench.warmup=2"))
    assert (moved.status, moved.run_id) == ("skipped", first.run_id)
    assert pipeline.run(tiny_config("train.epochs=0", "eval.conf_thres=0.01")).status == "completed"


def test_other_code_retrains_unless_reuse_across_code(tiny_config, tmp_path, monkeypatch) -> None:
    first = pipeline.run(tiny_config("train.epochs=0"))
    # A simulated code change: the code identity of a later version of the package.
    monkeypatch.setattr(identity, "code_identity", lambda package_dir=None: OTHER_CODE)
    kept = pipeline.run(tiny_config("train.epochs=0", "reuse_across_code=true"))
    assert (kept.status, kept.run_id) == ("skipped", first.run_id)
    (run,) = runs(tmp_path).to_dict("records")
    assert run["tags.reuse_across_code"] == "true"  # the report counts it as kept across versions

    rerun = pipeline.run(tiny_config("train.epochs=0"))
    assert rerun.status == "completed" and rerun.run_id != first.run_id
    logged = runs(tmp_path).set_index("run_id")
    assert logged.loc[rerun.run_id, "tags.code_identity"] == OTHER_CODE
    assert logged.loc[first.run_id, "tags.code_identity"] != OTHER_CODE


def test_an_unreadable_dataset_is_one_error_and_a_failed_run(tmp_path: Path) -> None:
    cfg = compose_config(eval_only(tmp_path, "dataset=yolo", "dataset.yaml=/nonexistent/data.yaml"))
    with pytest.raises(FileNotFoundError, match="dataset.yaml: /nonexistent/data.yaml not found"):
        pipeline.run(cfg)
    (run,) = runs(tmp_path).to_dict("records")
    assert run["mlflow_status"] == "FAILED" and "FileNotFoundError" in run["tags.error"]


def test_a_relative_data_yaml_is_taken_from_the_launch_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(eval_only(tmp_path, "dataset=yolo", "dataset.yaml=sets/data.yaml"))
    resolved = settings.resolve(cfg)
    assert resolved.config["dataset"]["yaml"] == str(tmp_path / "sets" / "data.yaml")


def test_the_group_choice_params_are_no_identity_items(tiny_config) -> None:
    config = settings.resolve(tiny_config()).config
    params = cell_params(config, {"backbone": "c3", "neck": "pan", "operator": "conv", "dataset": "shapes"})
    assert identity.identity_items(params) == identity.identity_items(flatten(config))


def test_a_skipped_cell_reports_the_figures_of_its_completed_run(tiny_config) -> None:
    """The sweep's summary and the adaptive sweep's verdicts read a skipped cell's mAP from its
    result: it is the completed run's reported (test split) figure, not a missing seed."""
    cfg = tiny_config()
    first = pipeline.run(cfg)
    again = pipeline.run(cfg)
    assert (again.status, again.run_id) == ("skipped", first.run_id)
    assert again.metrics["map50_95"] == pytest.approx(first.metrics["map50_95"])
    assert again.metrics["map50"] == pytest.approx(first.metrics["map50"])
