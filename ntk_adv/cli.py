"""The ``ntk-adv`` command: one entry point, one subcommand per experiment.

The library side of the command: the application (``experiments.cli``) hands in its registry of commands -
subcommand -> module exposing ``COMMAND``, a frozen ``Config`` dataclass and ``main(config, out, *, progress)`` -
and this module builds the parser and runs one. It never imports the application: dependencies point from
``experiments`` to ``ntk_adv`` only. Options are generated from the dataclass fields (tuples take several values,
separated by spaces or commas; nested ``DataSpec`` fields are ``--dataset``, ``--n-train``, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import typing
from collections.abc import Mapping
from pathlib import Path

Commands = Mapping[str, str]  # subcommand -> importable module with COMMAND, Config and main


DATA_OPTIONS = {"name": "dataset", "seed": "data_seed", "root": "data_root"}


def _field_type(tp):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is tuple:
        return "tuple", args[0] if args else str
    if origin is typing.Union or (origin is not None and type(None) in typing.get_args(tp)):
        return "optional", args[0]
    return "plain", tp


def _items(base):
    """argparse type for one token of a tuple option: ``1 2 3`` and ``1,2,3`` both work."""

    def parse(token: str) -> list:
        parts = [p for p in token.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"empty value {token!r}")
        try:
            return [base(p.strip()) for p in parts]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"invalid {base.__name__} in {token!r}") from err

    parse.__name__ = base.__name__
    return parse


def _add_field(parser, name: str, tp, default, dest: str):
    flag = "--" + name.replace("_", "-")
    metavar = name.upper()
    kind, base = _field_type(tp)
    if base is bool:
        parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default)
    elif kind == "tuple":
        parser.add_argument(flag, dest=dest, type=_items(base), nargs="+", default=default, metavar=metavar,
                            help=f"(default: {' '.join(map(str, default))}; spaces or commas)")
    else:
        parser.add_argument(flag, dest=dest, type=base, default=default, metavar=metavar,
                            help=f"(default: {default})")


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    hints = typing.get_type_hints(config_cls)
    default = config_cls()
    top_level = {f.name for f in dataclasses.fields(config_cls)}
    for f in dataclasses.fields(config_cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            sub_hints = typing.get_type_hints(type(value))
            for g in dataclasses.fields(value):
                opt = DATA_OPTIONS.get(g.name, g.name)
                if opt in top_level:  # a top-level field (e.g. a sweep axis n_train) shadows the data field
                    continue
                _add_field(parser, opt, sub_hints[g.name], getattr(value, g.name), f"{f.name}.{g.name}")
        else:
            _add_field(parser, f.name, hints[f.name], value, f.name)


def config_from_args(args: argparse.Namespace, config_cls):
    default = config_cls()
    kwargs = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            sub = {g.name: getattr(args, f"{f.name}.{g.name}", getattr(value, g.name))
                   for g in dataclasses.fields(value)}
            kwargs[f.name] = type(value)(**sub)
        else:
            v = getattr(args, f.name)
            kwargs[f.name] = tuple(item for token in v for item in token) if isinstance(v, list) else v
    return config_cls(**kwargs)


def build_parser(commands: Commands) -> argparse.ArgumentParser:
    """The ``ntk-adv`` parser with one subcommand per entry of ``commands``."""
    parser = argparse.ArgumentParser(prog="ntk-adv", description="Adversarial examples on wide two-layer networks "
                                     "and their NTK limits: one subcommand per experiment.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in commands.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=summary, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_arguments(p, module.Config)
        p.add_argument("--out", type=Path, default=Path("runs") / name, help="output directory")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--debug", action="store_true", help="show full tracebacks on errors (or NTK_ADV_DEBUG=1)")
        p.set_defaults(_module=module)
    return parser


def os_error_message(err: OSError) -> str:
    """One line naming the path(s) and the cause of an OS-level failure."""
    cause = err.strerror or str(err)
    if err.filename is None:
        return cause
    where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 is not None else "")
    return f"{where}: {cause}"


def main(argv: list[str] | None, commands: Commands) -> int:
    """Run a subcommand of ``commands``. Bad options and data: one line and exit code 2; OS-level failures (unwritable or
    read-only output, a file in the way, a full disk): one line naming the path and the cause, exit code 1;
    Ctrl-C: one line, exit code 130 (finished cells stay in the store). ``--debug`` or ``NTK_ADV_DEBUG=1``
    shows the full traceback instead."""
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    module = args._module
    debug = args.debug or os.environ.get("NTK_ADV_DEBUG", "") not in ("", "0")
    prefix = f"ntk-adv {args.command}"
    try:
        if os.environ.get("NTK_ADV_JAX_CACHE"):
            # Opt-in: jaxlib 0.5.3 was seen to return wrong (all-zero) L-BFGS perturbations from a cached
            # executable, so the persistent compilation cache is off unless asked for.
            from ntk_adv.engine import enable_compilation_cache

            enable_compilation_cache(os.environ["NTK_ADV_JAX_CACHE"])
        cfg = config_from_args(args, module.Config)
        if args.out.is_dir():
            from ntk_adv.results import sweep_temp_files

            sweep_temp_files(args.out)  # debris of an earlier killed run
        module.main(cfg, args.out, progress=not args.quiet)
    except KeyboardInterrupt:
        if debug:
            raise
        parser.exit(130, f"{prefix}: interrupted; finished cells are kept in the store, re-run the same command "
                         f"to resume\n")
    except (ValueError, FileNotFoundError) as err:
        if debug:
            raise
        msg = os_error_message(err) if isinstance(err, OSError) and err.errno is not None else str(err)
        parser.exit(2, f"{prefix}: error: {msg}\n")
    except OSError as err:
        if debug:
            raise
        parser.exit(1, f"{prefix}: error: {os_error_message(err)}\n")
    return 0

