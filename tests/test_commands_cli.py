"""One calling convention for every command (issue 23): each of `lightyolo.cli.COMMANDS`
answers `--help`, takes `key=value` overrides and prints its composed config with
`--cfg job`; a LIGHTYOLO_CONFIG_PATH directory's `commands/<command>.yaml` sets a command's
defaults, which the command line still overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightyolo import cli
from lightyolo.command import config_keys
from lightyolo.configs import GROUPS, config_dir

# command → (arguments before the overrides, an override, the line --cfg job then prints)
OVERRIDES: dict[str, tuple[list[str], str, str]] = {
    "run": ([], "seed=7", "seed: 7"),
    "sweep": (["smoke"], "seed=7", "seed: 7"),
    "report": ([], "margin=3", "margin: 3"),
    "zoo": ([], "img=96", "img: 96"),
    "bench": ([], "threads=3", "threads: 3"),
    "export": ([], "opset=18", "opset: 18"),
    "deploy": ([], "threads=3", "threads: 3"),
    "import_yolov5": ([], "src=a.pt", "src: a.pt"),
}


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`lightyolo ARGV` in this process: (exit status, stdout, stderr)."""
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_has_a_case_and_no_key_named_like_a_config_group() -> None:
    assert set(OVERRIDES) == set(cli.COMMANDS)
    own = [name for name in cli.COMMANDS if (config_dir() / f"{name}.yaml").is_file()]
    assert all(not set(config_keys(name)) & set(GROUPS) for name in own)  # Hydra: key=… picks a group option


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_answers_help_naming_its_keys(name: str, capsys) -> None:
    code, out, err = call(capsys, name, "--help")
    assert code == 0, err
    own = (config_dir() / f"{name}.yaml").is_file()
    keys = list(config_keys(name)) if own else {"run": ["experiment", "backbone", "seed"], "sweep": ["NAME"]}[name]
    assert all(key in out for key in keys), out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_prints_its_config_with_an_override(name: str, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before, override, line = OVERRIDES[name]
    code, out, err = call(capsys, name, *before, "--cfg", "job", override)
    assert code == 0, err
    assert line in out.splitlines(), out
    assert list(tmp_path.iterdir()) == []  # no output folder, no .hydra, no log file


def test_a_misspelt_key_is_one_line_naming_it(capsys) -> None:
    code, _, err = call(capsys, "bench", "experiment=x", "thread=2")
    assert code == 2
    assert err.strip().splitlines() == [
        f"lightyolo.bench: unknown key 'thread' (valid keys: {', '.join(config_keys('bench'))})"
    ]


@pytest.mark.parametrize(("argument", "message"), [
    ("threads", "argument 'threads': expected key=value"),
    ("threads=", "threads= is empty: give a value"),
    ("threads=1,2", "threads=1,2: one value expected"),
    ("threads=abc", "threads='abc': expected an integer"),
    ("-m", "-m: a command runs once"),
])
def test_bad_input_is_one_line_and_exit_status_2(argument: str, message: str, capsys) -> None:
    code, _, err = call(capsys, "bench", "experiment=x", argument)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"lightyolo.bench: {message}"), line


def test_list_keys_take_both_forms(capsys) -> None:
    for value in ("torch,onnxruntime", "[torch,onnxruntime]"):
        code, out, err = call(capsys, "bench", "--cfg", "job", f"runtimes={value}")
        assert code == 0, err
        assert OmegaConf.create(out).runtimes == ["torch", "onnxruntime"]


def test_a_config_path_directory_sets_a_commands_defaults(capsys, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "zoo.yaml").write_text("img: 96\nformat: csv\n")
    monkeypatch.setenv("LIGHTYOLO_CONFIG_PATH", str(tmp_path))
    code, out, err = call(capsys, "zoo", "--cfg", "job")
    assert code == 0, err
    assert (OmegaConf.create(out).img, OmegaConf.create(out).format) == (96, "csv")
    code, out, err = call(capsys, "zoo", "--cfg", "job", "img=128")  # the command line still wins
    assert code == 0, err
    assert (OmegaConf.create(out).img, OmegaConf.create(out).format) == (128, "csv")


def test_the_command_configs_keep_the_settings_defaults() -> None:
    """conf/<command>.yaml states each default the settings classes had (and still have)."""
    from lightyolo.bench.__main__ import bench_options
    from lightyolo.bench.experiment import BenchSettings
    from lightyolo.command import compose
    from lightyolo.deploy.__main__ import deploy_options
    from lightyolo.deploy.experiment import DeploySettings
    from lightyolo.export import ExportOptions, export_options
    from lightyolo.report.cli import ReportOptions, parse_options

    assert bench_options(compose("bench", ["experiment=x"])) == ("x", None, (), BenchSettings())
    assert deploy_options(compose("deploy", ["experiment=x"])) == ("x", None, (), DeploySettings())
    assert export_options(compose("export", ["run_id=r"])) == ExportOptions(run_id="r")
    assert parse_options([]) == ReportOptions()
