"""Adaptive seeds: `python -m lightyolo.sweep NAME seeds=adaptive [seeds.first=3]
[seeds.cap=8] [seeds.margin=2] [seeds.baseline=c3/pan/conv] [overrides]`.

Every cell of the sweep's grid (its backbone × neck × operator, the command line's values
of those keys replacing the file's) is trained with seeds 0..first−1; then, while some
comparison with the baseline is undecided (report/sequential.py: a group-sequential paired
t with a Pocock boundary, so looking after every seed keeps the error rates), the next seed
is trained for those variants only, and for the baseline where it lacks that seed, up to
`cap` seeds. Every extra seed is printed with the look that asked for it; the end prints
each comparison's decision, the cells spent, and what a fixed design would have cost.

Each batch is an ordinary sweep of one cell (`python -m lightyolo.sweep NAME backbone=…
neck=… operator=… seed=…`, its own sweep dir, the bench stage off), so runs land in the
experiment as usual and a rerun skips the seeds already completed. The report reads the
runs back with `python -m lightyolo.report seeds=adaptive seeds_first=… seeds_cap=…` and
replays the same looks.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from lightyolo.cell_result import read_results
from lightyolo.configs import config_dir
from lightyolo.report.sequential import Look, SequentialDesign, replay
from lightyolo.report.stats import UNDECIDED

ADAPTIVE = "seeds=adaptive"
FACTORS = ("backbone", "neck", "operator")
POINTS = 100.0
SEED_IN_NAME = re.compile(r"-s(\d+)(?: #\d+)?$")


@dataclass(frozen=True, order=True)
class Cell:
    backbone: str
    neck: str
    operator: str

    @classmethod
    def parse(cls, text: str) -> "Cell":
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"seeds.baseline={text!r}: expected backbone/neck/operator, e.g. c3/pan/conv")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.backbone}/{self.neck}/{self.operator}"


# Trains the given seeds of one cell; returns seed → mAP50-95 in points for those that completed.
Trainer = Callable[[Cell, list[int]], dict[int, float]]


@dataclass
class Outcome:
    """How one comparison with the baseline ended."""

    variant: Cell
    decided: Look | None  # the deciding (or last) look; None: fewer than `first` pairs
    seeds: list[int] = field(default_factory=list)  # seeds trained for the variant

    @property
    def decision(self) -> str:
        return self.decided.decision if self.decided else "not enough completed seeds"


def adaptive_seeds(variants: Sequence[Cell], baseline: Cell, design: SequentialDesign,
                   train: Trainer, log: Callable[[str], None] = print) -> tuple[list[Outcome], int]:
    """The procedure of the module docstring: (one Outcome per variant, cells used)."""
    tried: dict[Cell, list[int]] = {}
    scores: dict[Cell, dict[int, float]] = {}

    def run(cell: Cell, seeds: list[int]) -> None:
        todo = [s for s in seeds if s not in tried.setdefault(cell, [])]
        if todo:
            tried[cell] += todo
            scores.setdefault(cell, {}).update(train(cell, todo))

    first = list(range(design.first))
    log(f"adaptive seeds: {len(variants) + 1} cells × seeds {first[0]}..{first[-1]}; "
        f"{design.describe()}")
    for cell in (baseline, *variants):
        run(cell, first)
    open_variants = list(variants)
    while open_variants:
        launches = []
        for variant in open_variants:
            decided = _look(scores, variant, baseline, design)
            seed = len(tried[variant])
            if (decided is not None and decided.stops) or seed >= design.cap:
                continue
            why = ("fewer than " f"{design.first} paired seeds completed" if decided is None else
                   f"{decided.words()} holds 0 and reaches past ±{design.margin:g} pts: undecided")
            baseline_too = "" if seed in tried[baseline] else f" (and of the baseline {baseline})"
            log(f"launching seed {seed} of {variant}{baseline_too}: {why}")
            launches.append((variant, seed))
        if not launches:
            break
        for seed in sorted({s for _, s in launches}):
            run(baseline, [seed])
        for variant, seed in launches:
            run(variant, [seed])
        open_variants = [v for v, _ in launches]
    outcomes = [Outcome(v, _look(scores, v, baseline, design), sorted(tried[v])) for v in variants]
    return outcomes, sum(len(s) for s in tried.values())


def _look(scores: dict[Cell, dict[int, float]], variant: Cell, baseline: Cell,
          design: SequentialDesign) -> Look | None:
    """The sequential look at the seeds both sides completed, in seed order."""
    mine, base = scores.get(variant, {}), scores.get(baseline, {})
    common = sorted(set(mine) & set(base))
    if len(common) < design.first:
        return None
    return replay([mine[s] - base[s] for s in common], design)


def summary(outcomes: Sequence[Outcome], cells: int, design: SequentialDesign) -> str:
    """Per comparison the decision and the look that made it; the cells spent."""
    lines = [f"{'variant':<28} {'decision':<12} {'look':<58} seeds"]
    for o in outcomes:
        look = o.decided.words() if o.decided else "-"
        note = " (cap)" if o.decided and o.decision == UNDECIDED else ""
        lines.append(f"{str(o.variant):<28} {o.decision + note:<12} {look:<58} {len(o.seeds)}")
    fixed = (len(outcomes) + 1) * 5
    # "used": a rerun, or a store that already holds some seeds, skips them rather than retrains
    lines.append(f"cells used: {cells}, trained now or kept from the store (a fixed 5 seeds per cell: {fixed}; fixed "
                 f"{design.cap}: {(len(outcomes) + 1) * design.cap})")
    return "\n".join(lines)


# --- The command line ---------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptiveOptions:
    design: SequentialDesign
    baseline: Cell
    overrides: list[str]  # what goes on to every batch's sweep


def parse_options(overrides: Sequence[str], family: int = 1) -> AdaptiveOptions:
    """Splits `seeds.*` options (and seeds=adaptive) from the sweep's own overrides."""
    values = {"first": "3", "cap": "8", "margin": "2", "baseline": "c3/pan/conv"}
    rest = []
    for override in overrides:
        key, _, value = override.partition("=")
        if override == ADAPTIVE:
            continue
        if key.startswith("seeds."):
            name = key[len("seeds."):]
            if name not in values:
                raise ValueError(f"{key}: unknown (valid: {', '.join('seeds.' + k for k in values)})")
            values[name] = value
        elif key == "seed":
            raise ValueError("seed=…: adaptive seeds choose the seeds; drop it")
        else:
            rest.append(override)
    try:
        design = SequentialDesign(int(values["first"]), int(values["cap"]),
                                  float(values["margin"]), family=family)
    except ValueError as err:
        raise ValueError(f"seeds.first / seeds.cap / seeds.margin: {err}") from None
    return AdaptiveOptions(design, Cell.parse(values["baseline"]), rest)


def grid_cells(sweep_path: Path, overrides: Sequence[str]) -> list[Cell]:
    """The backbone × neck × operator cells of a sweep file (following its defaults to
    other sweep files of its folder), the command line's values replacing the file's."""
    params = _sweeper_params(sweep_path)
    for override in overrides:
        key, _, value = override.partition("=")
        if key in FACTORS:
            params[key] = value
    defaults = _default_choices()
    missing = [f for f in FACTORS if f not in params and f not in defaults]
    if missing:
        raise ValueError(f"{sweep_path}: no grid values for {', '.join(missing)} "
                         "(give them, e.g. backbone=c3,ghost)")
    params = {**defaults, **params}
    values = [[v.strip() for v in str(params[f]).split(",") if v.strip()] for f in FACTORS]
    return sorted(Cell(*c) for c in _product(values))


def _product(values: list[list[str]]) -> list[tuple[str, ...]]:
    result: list[tuple[str, ...]] = [()]
    for options in values:
        result = [(*r, v) for r in result for v in options]
    return result


def _default_choices() -> dict[str, str]:
    """The factor groups' default options of conf/config.yaml (a factor the sweep does not
    vary keeps its default)."""
    config = OmegaConf.load(config_dir() / "config.yaml")
    choices = {}
    for entry in config.get("defaults", []):
        if not isinstance(entry, str):
            choices.update({str(k): str(v) for k, v in entry.items() if k in FACTORS})
    return choices


def _sweeper_params(path: Path) -> dict[str, str]:
    config = OmegaConf.load(path)
    params: dict[str, str] = {}
    for entry in config.get("defaults", []):
        name = entry if isinstance(entry, str) else None
        if name and (path.parent / f"{name}.yaml").is_file() and name != path.stem:
            params.update(_sweeper_params(path.parent / f"{name}.yaml"))
    own = OmegaConf.select(config, "hydra.sweeper.params") or {}
    params.update({str(k): str(v) for k, v in own.items()})
    return params


def sweep_trainer(name: str, overrides: Sequence[str], root: Path,
                  log: Callable[[str], None] = print) -> Trainer:
    """Trains by running `python -m lightyolo.sweep NAME …` for one cell and the given seeds
    in its own sweep dir under `root`, and reads the cells' results back."""
    def train(cell: Cell, seeds: list[int]) -> dict[int, float]:
        sweep_dir = root / f"{cell.backbone}-{cell.neck}-{cell.operator}-s{'_'.join(map(str, seeds))}"
        command = [sys.executable, "-m", "lightyolo.sweep", name, *overrides,
                   f"backbone={cell.backbone}", f"neck={cell.neck}", f"operator={cell.operator}",
                   "seed=" + ",".join(map(str, seeds)), f"hydra.sweep.dir={sweep_dir}",
                   "bench.after_sweep=false"]
        subprocess.run(command, check=False)  # a failed cell is a missing seed, not the end
        scores = {}
        for result in read_results(sweep_dir):
            match = SEED_IN_NAME.search(result.cell)
            if match and result.status in ("completed", "skipped") and result.map50_95 is not None:
                scores[int(match.group(1))] = result.map50_95 * POINTS
        failed = sorted(set(seeds) - set(scores))
        if failed:
            log(f"{cell}: seed(s) {failed} did not complete (see {sweep_dir})")
        return scores
    return train


def main(name: str, sweep_path: Path, overrides: Sequence[str]) -> int:
    """The CLI behind `python -m lightyolo.sweep NAME seeds=adaptive …`."""
    try:
        cells = grid_cells(sweep_path, overrides)
        options = parse_options(overrides, family=max(1, len(cells) - 1))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if options.baseline not in cells:
        print(f"error: seeds.baseline={options.baseline} is not a cell of the grid "
              f"({', '.join(map(str, cells))})", file=sys.stderr)
        return 2
    variants = [c for c in cells if c != options.baseline]
    root = Path("multirun") / f"adaptive-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    outcomes, spent = adaptive_seeds(variants, options.baseline, options.design,
                                     sweep_trainer(name, options.overrides, root))
    print(summary(outcomes, spent, options.design), flush=True)
    print(f"report: python -m lightyolo.report seeds=adaptive seeds_first={options.design.first} "
          f"seeds_cap={options.design.cap} margin={options.design.margin:g} "
          f"baseline={options.baseline}")
    return 0
