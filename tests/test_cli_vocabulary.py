"""One vocabulary across commands: every option has help, fixed-choice strings are ``Literal`` types equal to
the library's registries, options a command sets itself are hidden (``CLI_HIDE``), and retired names stay
gone."""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from typing import get_args

import pytest

from experiments import cli
from ntk_adv.cli import field_docs

# str leaves whose values are free-form (paths, subsets spelled as one string, discovered command names)
FREE_TEXT = {
    "data.root",  # a directory
    "data_root",  # reproduce: a directory
    "run.store",  # a directory
    "parts",  # intriguing / linearity: any subset of the part letters, one string
    "experiments",  # report: the reportable commands, discovered from the sources
}
RETIRED = {"eps_grid", "eps_rel"}  # renamed to eps (linearity, halfway)
LEARNING_RATES = {"lr", "lr_f", "lr_g"}  # the one spelling of a run's learning rate(s)


def _configs() -> dict[str, type]:
    return {cmd: importlib.import_module(mod).Config for cmd, mod in cli.commands().items()}


def _leaves(cls: type, default=None, prefix: str = ""):
    """(dotted path, annotated type, owning class, field name) of every option leaf, depth first."""
    default = cls() if default is None else default
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True) is False:
            continue
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _leaves(type(value), value, prefix + f.name + ".")
        else:
            yield prefix + f.name, hints[f.name], cls, f.name


def _hidden(cls: type, default=None, prefix: str = "") -> set[str]:
    """Every ``CLI_HIDE`` path of the tree, as a full dotted path."""
    default = cls() if default is None else default
    out = {prefix + p for p in getattr(cls, "CLI_HIDE", ())}
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out |= _hidden(type(value), value, prefix + f.name + ".")
    return out


def _base(tp):
    """The element type of ``tuple[X, ...]`` / ``X | None``, else ``tp``."""
    if typing.get_origin(tp) is tuple:
        tp = get_args(tp)[0]
    args = [a for a in get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    return tp


CONFIGS = _configs()


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_every_option_has_help(command):
    """Each leaf field of the command's config tree documents itself (a trailing ``# comment`` or an
    attribute docstring): the help does not lean on the glossary."""
    missing = [path for path, _, owner, name in _leaves(CONFIGS[command]) if not field_docs(owner).get(name)]
    assert not missing, f"{command}: options without help: {missing}"


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_fixed_choices_are_literals(command):
    """A str option either lists its choices (a ``Literal``) or is free text on purpose."""
    loose = [
        path
        for path, tp, _, _ in _leaves(CONFIGS[command])
        if _base(tp) is str and not any(path == f or path.endswith("." + f) for f in FREE_TEXT)
    ]
    assert not loose, f"{command}: str options without a Literal type: {loose}"


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_hidden_options_exist(command):
    """Every CLI_HIDE path names a leaf of the tree (a typo would hide nothing)."""
    paths = {path for path, *_ in _leaves(CONFIGS[command])}
    assert _hidden(CONFIGS[command]) <= paths, _hidden(CONFIGS[command]) - paths


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_one_vocabulary(command):
    """Retired names are gone; a learning rate is lr, or lr_f / lr_g for f and g, never a third way; one
    attack-radius grid per command is called eps."""
    leaves = [path.rsplit(".", 1)[-1] for path, *_ in _leaves(CONFIGS[command])]
    assert not RETIRED & set(leaves)
    assert not {n for n in leaves if n in ("learning_rate", "step_size", "lr_grid", "eta")}
    assert set(leaves) & {"lr_f", "lr_g", "lr"} <= LEARNING_RATES


def test_dead_options_hidden():
    """Options a command overwrites are hidden: the nets' width where --widths sweeps it, data.d /
    data.n_train beside perturbation-learning's d / n_train axes."""
    hidden = {cmd: _hidden(cls) for cmd, cls in CONFIGS.items()}
    for cmd in ("convergence", "halfway", "intriguing", "ilyas"):
        assert "net.width" in hidden[cmd], cmd
    for cmd in ("perturbation-learning", "demo"):
        assert {"data.d", "data.n_train"} <= hidden[cmd], cmd
    assert "convergence.net.width" in hidden["depth"]
    assert {"agreement.data.d", "agreement_balanced.data.n_train"} <= hidden["depth"]
    assert {"convergence.run.backend", "agreement.run.store"} <= hidden["depth"]  # depth's own run wins


def test_scenario_help_names_only_real_scenarios():
    """perturbation-learning's --scenario help lists the scenarios the protocol runs (no 'c')."""
    from experiments import perturbation_learning as pl
    from ntk_adv.perturbation import protocol

    hints = typing.get_type_hints(pl.Config)
    assert get_args(hints["scenario"]) == protocol.SCENARIOS == ("a", "b", "noise")
    doc = field_docs(pl.Config)["scenario"]
    assert all(f"{s}:" in doc for s in protocol.SCENARIOS) and "c:" not in doc and "c =" not in doc


def test_literals_match_registries():
    """Each Literal alias equals the registry that validates the same names at run time."""
    from experiments import bench, figures, reproduce
    from experiments import perturbation_learning as pl
    from experiments.halfway import config as halfway
    from experiments.purification import config as purification
    from ntk_adv import arch, attacks, data, engine, ilyas, losses, multiclass, pattern_gd
    from ntk_adv.arch import base
    from ntk_adv.perturbation import protocol

    assert get_args(attacks.AttackName) == attacks.ATTACKS
    assert get_args(arch.ArchName) == tuple(arch.ARCHITECTURES)
    assert get_args(base.ParametrizationChoice) == ("auto", *base.PARAMETRIZATIONS)
    assert get_args(pl.config.Trained) == ("auto", *get_args(arch.Trained))
    assert get_args(data.DatasetName) == data.DATASETS
    assert set(get_args(data.SyntheticName)) <= set(data.DATASETS)
    assert set(get_args(data.AllClassesDataset)) <= set(data.DATASETS)
    assert get_args(data.AllClassesDataset) == data.ALL_CLASSES_DATASETS
    assert get_args(losses.Loss) == losses.LOSSES
    assert get_args(multiclass.MCLoss) == multiclass.MC_LOSSES
    assert get_args(multiclass.AttackLoss) == multiclass.ATTACK_LOSSES
    assert get_args(multiclass.MCAttack) == multiclass.MC_ATTACKS
    assert set(multiclass.MC_ATTACKS) <= set(attacks.ATTACKS)
    assert get_args(ilyas.IlyasTargets) == ilyas.TARGETS
    assert get_args(ilyas.IlyasScenario) == ilyas.SCENARIOS
    assert ilyas.ARCHS == get_args(arch.ArchName)
    assert get_args(protocol.Scenario) == protocol.SCENARIOS
    assert get_args(protocol.Targets) == protocol.TARGET_MODES
    assert get_args(protocol.Preset) == protocol.PRESETS
    assert get_args(pattern_gd.Solver) == pattern_gd.SOLVERS
    assert get_args(engine.Backend) == engine.BACKENDS
    assert get_args(halfway.HalfwayAttack) == halfway.HALFWAY_ATTACKS
    assert set(halfway.HALFWAY_ATTACKS) <= set(attacks.ATTACKS)
    assert get_args(purification.AdvAttack) == purification.ADV_ATTACKS
    assert set(purification.ADV_ATTACKS) <= set(attacks.ATTACKS)
    assert get_args(purification.Dictionary) == purification.DICTIONARIES
    assert get_args(bench.Section) == bench.SECTIONS
    assert get_args(reproduce.PanelName) == tuple(reproduce.PANELS)
    assert get_args(figures.FigurePanel) == (*figures.PANELS, *figures.EXTRA_PANELS)
    assert set(get_args(typing.get_type_hints(bench.Config)["panel"])) <= set(reproduce.PANELS)


def test_literals_still_validated_at_run_time():
    """The Python API keeps refusing names outside the choices (a Literal annotation alone checks nothing)."""
    from experiments import perturbation_learning as pl
    from experiments.halfway import config as halfway
    from ntk_adv import ilyas

    with pytest.raises(ValueError, match="scenario"):
        pl.Config(scenario="c")
    with pytest.raises(ValueError, match="attack"):
        pl.Config(attack="foo")
    with pytest.raises(ValueError, match="attack"):
        halfway.Config(attack="pgd_l2")
    with pytest.raises(ValueError, match="targets"):
        ilyas.IlyasSetup(targets=("nope",))
