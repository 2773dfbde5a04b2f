"""The contract at build, as a user's plugin meets it: constructor arguments checked before
instantiating, an operator that breaks its protocol, and backbones that break theirs — each
one line naming the class and the mismatch, in-process and through the CLIs (zoo, run)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

from lightyolo.models.backbones.c3 import C3Backbone
from lightyolo.models.contracts import ContractError
from lightyolo.models.detector import build_detector

from conftest import tiny_overrides

CONV = {"_target_": "lightyolo.models.operators.conv.ConvOperator"}
PAN = {"_target_": "lightyolo.models.necks.pan.PANNeck"}
C3 = {"_target_": "lightyolo.models.backbones.c3.C3Backbone"}


class StagedBackbone(C3Backbone):
    """Needs an argument neither the build nor its yaml gives."""

    def __init__(self, width_multiple: float, depth_multiple: float, operator: object, stages: int) -> None:
        super().__init__(width_multiple, depth_multiple, operator)


class NoOperatorBackbone(C3Backbone):
    """Does not take the run's operator."""

    def __init__(self, width_multiple: float, depth_multiple: float) -> None:
        super().__init__(width_multiple, depth_multiple, None)


class HalvingOperator:
    """Returns an op that halves the map: breaks the operator's shape contract."""

    def __call__(self, channels: int, kernel_size: int, *, depthwise: bool, act: bool | nn.Module = True) -> nn.Module:
        return nn.MaxPool2d(2)


class PositionalOperator:
    """Takes depthwise positionally only: the blocks call it by keyword."""

    def __call__(self, channels: int, kernel_size: int, depthwise: bool, /) -> nn.Module:
        return nn.Identity()


def target(cls: type, **options: object) -> dict:
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **options}


def build_error(backbone: dict = C3, neck: dict = PAN, operator: dict = CONV) -> str:
    with pytest.raises(ContractError) as error:
        build_detector(backbone, neck, operator, scale="n", nc=3)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_missing_constructor_argument_is_named_before_instantiating() -> None:
    message = build_error(target(StagedBackbone))
    assert message.startswith("conf/backbone: StagedBackbone(")
    assert message.endswith(
        "missing a required argument: 'stages' (the build passes width_multiple, depth_multiple, "
        "operator; the yaml gives nothing)"
    )


def test_a_backbone_that_does_not_take_the_operator_is_named() -> None:
    message = build_error(target(NoOperatorBackbone))
    assert "NoOperatorBackbone(" in message and "unexpected keyword argument 'operator'" in message


def test_a_yaml_key_the_class_does_not_take_is_named() -> None:
    message = build_error(neck={**PAN, "widht": 2})
    assert message.startswith("conf/neck: PANNeck(") and "unexpected keyword argument 'widht'" in message
    assert message.endswith("the yaml gives widht)")


def test_an_operator_whose_op_changes_the_shape_is_named() -> None:
    assert build_error(operator=target(HalvingOperator)) == (
        "conf/operator: HalvingOperator(16, 3, depthwise=False) maps (1, 16, 8, 8) to (1, 16, 4, 4); "
        "an operator keeps (B, C, H, W)"
    )


def test_an_operator_with_the_wrong_call_signature_is_named() -> None:
    message = build_error(operator=target(PositionalOperator))
    assert message.startswith(
        "conf/operator: PositionalOperator cannot be called as operator(channels, kernel_size, *, depthwise, act)"
    )


@pytest.mark.parametrize(
    ("target_path", "expected"),
    [
        ("my_missing_package.Backbone", "no module 'my_missing_package' (is its folder on PYTHONPATH"),
        ("lightyolo.models.backbones.c3.NoSuchBackbone", "lightyolo.models.backbones.c3 has no 'NoSuchBackbone'"),
    ],
)
def test_a_target_that_cannot_be_imported_is_one_line(target_path: str, expected: str) -> None:
    assert expected in build_error({"_target_": target_path})


BROKEN_PARTS = '''
from lightyolo.models.backbones.c3 import C3Backbone


class NoStridesBackbone(C3Backbone):
    strides = None


class WideP5Backbone(C3Backbone):
    """Declares P5 with one channel more than its forward gives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        p3, p4, p5 = self.out_channels
        self.out_channels = (p3, p4, p5 + 1)
'''


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Path:
    """A plugin directory (and module) with two backbones that break the contract."""
    (tmp_path / "broken_parts.py").write_text(textwrap.dedent(BROKEN_PARTS))
    for name, cls in (("no_strides", "NoStridesBackbone"), ("wide_p5", "WideP5Backbone")):
        folder = tmp_path / name / "backbone"
        folder.mkdir(parents=True)
        (folder / f"{name}.yaml").write_text(f"_target_: broken_parts.{cls}\n")
    return tmp_path


def cli(plugin: Path, config_dir: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LIGHTYOLO_CONFIG_PATH": str(plugin / config_dir), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", *args], cwd=plugin, env=env, capture_output=True, text=True, timeout=300)


def test_the_zoo_names_a_backbone_with_wrong_out_channels_in_one_line(broken_plugin: Path) -> None:
    proc = cli(broken_plugin, "wide_p5", "lightyolo.zoo", "check=false", "img=64")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("python -m lightyolo.zoo: error: conf/backbone: WideP5Backbone declares out_channels (64, 128, 257)")
    assert "(256, 2, 2)" in line  # what the 64×64 check forward gave at P5


def test_a_run_names_a_backbone_without_strides_in_one_line(broken_plugin: Path) -> None:
    proc = cli(broken_plugin, "no_strides", "lightyolo.run", "backbone=no_strides", *tiny_overrides(broken_plugin))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: conf/backbone: NoStridesBackbone does not declare strides (3 ints for P3, P4, P5; "
        "see lightyolo/models/contracts.py)"
    )
