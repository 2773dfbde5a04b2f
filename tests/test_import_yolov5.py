"""`python -m lightyolo.import_yolov5`: YOLOv5's pickled checkpoints → the state dict lightyolo loads.

The official `yolov5n.pt` is not in the shared files (only its state dict is), so the test
writes a checkpoint the way YOLOv5's train.py does: in a separate process, a module tree of
classes from packages named `models.yolo` / `models.common` (YOLOv5's module names) holding
torch's own Conv2d / BatchNorm2d with YOLOv5n's official tensors, saved half-precision
inside YOLOv5's checkpoint dict. The converter runs without those packages on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, YOLOV5N_WEIGHTS

# YOLOv5's own module layout, rebuilt from a state dict's keys: every module a class of the
# right YOLOv5 name, leaves torch's Conv2d / BatchNorm2d of the tensors' shapes.
FAKE_YOLOV5 = {
    "models/__init__.py": "",
    "models/common.py": "import torch.nn as nn\n"
    + "".join(f"class {name}(nn.Module):\n    pass\n" for name in ("Conv", "C3", "Bottleneck", "SPPF", "Concat")),
    "models/yolo.py": "import torch.nn as nn\n"
    "class Detect(nn.Module):\n    pass\n"
    "class DetectionModel(nn.Module):\n    pass\n",
}
WRITER = r"""
import sys, torch, torch.nn as nn
from models.common import Conv, C3, Bottleneck, SPPF, Concat
from models.yolo import Detect, DetectionModel
state = torch.load(sys.argv[1], weights_only=True)
LAYERS = {0: Conv, 1: Conv, 2: C3, 3: Conv, 4: C3, 5: Conv, 6: C3, 7: Conv, 8: C3, 9: SPPF, 10: Conv,
          11: nn.Upsample, 12: Concat, 13: C3, 14: Conv, 15: nn.Upsample, 16: Concat, 17: C3, 18: Conv,
          19: Concat, 20: C3, 21: Conv, 22: Concat, 23: C3, 24: Detect}

def node(path, cls):
    module = nn.Upsample(scale_factor=2.0) if cls is nn.Upsample else cls()
    children = sorted({k[len(path) + 1:].split(".")[0] for k in state if k.startswith(path + ".")})
    for name in children:
        key = f"{path}.{name}"
        if f"{key}.weight" in state and state[f"{key}.weight"].dim() == 4:
            w = state[f"{key}.weight"]
            leaf = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=f"{key}.bias" in state)
            leaf.load_state_dict({k[len(key) + 1:]: v for k, v in state.items() if k.startswith(key + ".")})
            module.add_module(name, leaf)
        elif f"{key}.running_mean" in state:
            leaf = nn.BatchNorm2d(state[f"{key}.weight"].shape[0])
            leaf.load_state_dict({k[len(key) + 1:]: v for k, v in state.items() if k.startswith(key + ".")})
            module.add_module(name, leaf)
        elif f"{key}" in state:  # a buffer of this module (Detect's anchors)
            module.register_buffer(name, state[key])
        else:
            sub = nn.ModuleList() if name == "m" and cls is Detect else (
                nn.Sequential() if name == "m" else Bottleneck() if path.endswith(".m") else Conv())
            module.add_module(name, node(key, type(sub)))
    return module

model = DetectionModel()
model.model = nn.Sequential(*[node(f"model.{i}", LAYERS[i]) for i in range(25)])
model.model[24].nc = 80
model.model[24].stride = torch.tensor([8.0, 16.0, 32.0])
model.names = [str(i) for i in range(80)]
checkpoint = {"epoch": -1, "best_fitness": None, "model": model.half(), "ema": None, "updates": None,
              "optimizer": None, "opt": {"weights": "yolov5n.pt"}, "git": None, "date": "2022-02-08"}
torch.save(checkpoint, sys.argv[2])
"""


def _run(args: list[str], cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (extra_path, REPO) if p)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def yolov5n_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLOv5n checkpoint as YOLOv5 pickles it (its classes, half precision)."""
    root = tmp_path_factory.mktemp("yolov5")
    for name, text in FAKE_YOLOV5.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "write.py").write_text(WRITER)
    done = _run([str(root / "write.py"), str(YOLOV5N_WEIGHTS), str(root / "yolov5n.pt")], root, extra_path=root)
    assert done.returncode == 0, done.stderr
    return root / "yolov5n.pt"


@pytest.mark.shared("weights/yolov5n.state_dict.pt")
def test_a_pickled_yolov5n_checkpoint_converts_to_the_official_tensors(yolov5n_pt: Path, tmp_path: Path) -> None:
    out = tmp_path / "converted.pt"
    done = _run(["-m", "lightyolo.import_yolov5", f"src={yolov5n_pt}", f"out={out}"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"wrote {out}: YOLOv5n, 80 classes, 349 tensors; use model.weights={out} model.scale=n"
    )
    converted = torch.load(out, weights_only=True)
    official = torch.load(YOLOV5N_WEIGHTS, weights_only=True)
    assert converted.keys() == official.keys()
    for key, value in official.items():
        assert converted[key].dtype == torch.float32, key
        # saved half-precision, as YOLOv5 does: equal to fp16 rounding
        torch.testing.assert_close(converted[key], value.half().float(), rtol=0, atol=0, msg=key)


def test_a_checkpoint_that_builds_anything_else_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "evil.py").write_text(
        "import os, torch\n"
        "class Payload:\n"
        f"    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
        "torch.save({'model': Payload()}, 'evil.pt')\n"
    )
    assert _run([str(tmp_path / "evil.py")], tmp_path).returncode == 0
    done = _run(["-m", "lightyolo.import_yolov5", f"src={tmp_path / 'evil.pt'}", f"out={tmp_path / 'x.pt'}"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"lightyolo.import_yolov5: {tmp_path / 'evil.pt'}: refusing to load posix.system: "
        "a YOLOv5 checkpoint holds no such object"
    )
    assert not marker.exists() and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weights": torch.zeros(2)}, "expected a YOLOv5 detection checkpoint (a dict whose 'model' is "
                                      "models.yolo.DetectionModel), found dict"),
        ([1, 2], "expected a YOLOv5 detection checkpoint (a dict whose 'model' is models.yolo.DetectionModel), "
                 "found list"),
    ],
)
def test_a_torch_file_that_is_no_yolov5_checkpoint_is_one_line(tmp_path: Path, content, message: str) -> None:
    torch.save(content, tmp_path / "other.pt")
    done = _run(["-m", "lightyolo.import_yolov5", f"src={tmp_path / 'other.pt'}", f"out={tmp_path / 'x.pt'}"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"lightyolo.import_yolov5: {tmp_path / 'other.pt'}: {message}"


def test_a_missing_file_and_missing_keys_are_one_line(tmp_path: Path) -> None:
    done = _run(["-m", "lightyolo.import_yolov5", f"src={tmp_path / 'none.pt'}", f"out={tmp_path / 'x.pt'}"], tmp_path)
    assert done.returncode == 2 and done.stderr.strip().endswith(f"{tmp_path / 'none.pt'}: no such file")
    done = _run(["-m", "lightyolo.import_yolov5", f"src={tmp_path / 'none.pt'}"], tmp_path)
    assert done.returncode == 2 and "give src=FILE.pt and out=FILE" in done.stderr
