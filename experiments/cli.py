"""The ``ntk-adv`` command of this application: finds the experiment modules of this package and hands that
registry to the library's generic CLI (:mod:`ntk_adv.cli`). Adding an experiment means adding a module (or a
package, or a module inside a package) that defines ``COMMAND = "name"``, ``Config`` and ``main`` - nothing to
register. Discovery reads the sources (``ast``) and imports nothing, so ``ntk-adv --help`` answers without
JAX; a command's module is imported only when that command runs (or its options are described for the first
time).

The package is ``experiments`` in a checkout and ``ntk_adv_experiments`` in an installed wheel; everything
here is relative to ``__package__``, and the modules import each other relatively (``from . import x``). The
console script is :func:`main` of this module: the application depends on the library, never the reverse.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from functools import lru_cache
from pathlib import Path

from ntk_adv import cli as _cli

PACKAGE = __package__ or "experiments"
ROOT = Path(__file__).resolve().parent

_COMMAND = re.compile(r"""^COMMAND\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""", re.M)
_CONFIG = re.compile(r"^(class Config\b|Config\s*=|from \S+ import .*\bConfig\b)", re.M)
_MAIN = re.compile(r"^(def main\(|main\s*=|from \S+ import .*\bmain\b)", re.M)


def _literal_command(path: Path) -> str | None:
    """The string literal assigned to a top-level ``COMMAND`` in ``path`` if the module also defines (or
    imports) ``Config`` and ``main`` at top level, else None. A text scan, not an import (and faster than
    parsing: discovery runs on every ``ntk-adv`` call)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    found = _COMMAND.search(text)
    return found.group(1) if found and _CONFIG.search(text) and _MAIN.search(text) else None


@lru_cache(maxsize=1)
def commands() -> dict[str, str]:
    """Subcommand -> module name, for every module of this package (packages included, recursively) that
    defines ``COMMAND``, ``Config`` and ``main``; found from the sources, nothing is imported."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("").parts
        if rel == ("cli",) or any(p.startswith(("_", ".")) and p != "__init__" for p in rel):
            continue
        parts = rel[:-1] if rel[-1] == "__init__" else rel
        if not parts:
            continue
        command = _literal_command(path)
        if command:
            found.setdefault(command, ".".join((PACKAGE, *parts)))
    return dict(sorted(found.items()))


def _checkout_cli():
    """The checkout's ``experiments.cli`` when this module is the editable install's snapshot, else None.

    ``uv sync`` installs the project editable: ``ntk_adv`` and ``experiments`` are imported from the checkout
    (a ``.pth`` entry), but hatch's force-include also copies ``experiments/`` into site-packages as
    ``ntk_adv_experiments`` - a copy taken at install time. The console script imports that name, so a copy
    whose library lives elsewhere (not beside it, as in a wheel) hands over to the live application next to
    the library it imports."""
    if PACKAGE == "experiments":
        return None
    import ntk_adv

    home = Path(ntk_adv.__file__).resolve().parents[1]
    if home == ROOT.parent or not (home / "experiments" / "cli.py").is_file():
        return None  # a wheel: the library and the application were installed side by side
    spec = importlib.util.find_spec("experiments")
    if spec is None or not spec.origin or Path(spec.origin).resolve().parent != home / "experiments":
        return None
    return importlib.import_module("experiments.cli")


# Valid values by option name (the field's leaf name), checked before JAX is imported; a count that must be an
# integer is also capped at int32 (ntk_adv.guards.INT_MAX).
RANGES: dict[str, str] = {
    "lr": "> 0",
    "lr_f": "> 0",
    "lr_g": "> 0",
    "eps": ">= 0",
    "seeds": ">= 1",
    "widths": "[1, inf]",  # inf: the infinite-width limit
    "width": "[1, inf]",
    "depth": ">= 1",
    "depths": ">= 1",
    "n_train": ">= 1",
    "n_test": ">= 1",
    "n_kernel": ">= 1",
    "d": ">= 1",
    "steps": ">= 0",
    "steps_f": ">= 0",
    "steps_g": ">= 0",
    "gamma": "[0, 1)",
    "workers": ">= 1",
    "momentum": "[0, 1)",
}
# The figure styles of ``--style`` (ntk_adv.plots.STYLES; named here so that --help imports no matplotlib).
STYLES = ("neurips", "icml", "iclr", "plain")
# Options renamed since 0.1 (old flag -> new flag; CHANGELOG.md has the table): a typed old name is refused
# in one line naming the new one. Dotted paths now shortened (--train.lr -> --lr) are found automatically.
RENAMED: dict[str, str] = {"--eps-rel": "--eps", "--eps-grid": "--eps"}
SCHEMA_FILE = ROOT / "cli_schema.json"


def app() -> _cli.App:
    """This application as the library's CLI sees it."""
    return _cli.App(
        commands=commands(),
        ranges=RANGES,
        package=PACKAGE,
        schema_file=SCHEMA_FILE,
        styles=STYLES,
        renamed=RENAMED,
    )


def parse_config(command: str, argv: list[str]):
    """The ``Config`` that ``ntk-adv command argv`` would run (for tests and notebooks)."""
    spec, values = _cli.parse(app(), command, list(argv))
    module = importlib.import_module(commands()[command])
    return _cli.build_config(module.Config, _cli.split(values)[1])


def main(argv: list[str] | None = None) -> int:
    """The ``ntk-adv`` console script (``ntk_adv_experiments.cli:main``; ``experiments.cli`` in a
    checkout). ``--write-schema`` (maintainers) regenerates the shipped option schema, cli_schema.json."""
    try:
        live = _checkout_cli()
        if live is not None:
            return live.main(argv)
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv == ["--write-schema"]:
            print(f"ntk-adv: wrote {_cli.write_schema(app())}")
            return 0
        return _cli.main(argv, app())
    except KeyboardInterrupt:  # before the library's own handler is in place (imports, discovery)
        sys.stderr.write("ntk-adv: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
