"""The ``ntk-adv`` command of this application: discovers the experiment modules of ``experiments/`` and hands
that registry to the library's generic CLI (:mod:`ntk_adv.cli`). Adding an experiment means adding a module that
defines ``COMMAND``, ``Config`` and ``main`` - nothing to register. Discovery imports the modules, so it runs when
a command runs, not when this module is imported."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from functools import lru_cache

from ntk_adv import cli as _cli

config_from_args = _cli.config_from_args


@lru_cache(maxsize=1)
def commands() -> dict[str, str]:
    """Subcommand -> module: every module in ``experiments/`` that defines ``COMMAND``, ``Config`` and ``main``."""
    import experiments

    found = {}
    for info in sorted(pkgutil.iter_modules(experiments.__path__), key=lambda i: i.name):
        if info.name == "cli":
            continue
        module = importlib.import_module(f"experiments.{info.name}")
        if all(hasattr(module, a) for a in ("COMMAND", "Config", "main")):
            found[module.COMMAND] = module.__name__
    return found


def build_parser():
    return _cli.build_parser(commands())


def main(argv: list[str] | None = None) -> int:
    return _cli.main(argv, commands())


if __name__ == "__main__":
    sys.exit(main())
