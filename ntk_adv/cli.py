"""The ``ntk-adv`` command: one entry point, one subcommand per experiment.

The library side of the command: the application (``experiments.cli``) hands in its registry of commands -
subcommand -> module exposing ``COMMAND``, a frozen ``Config`` dataclass and ``main(config, out, *,
progress)`` - and this module builds the parser and runs one. It never imports the application: dependencies
point from ``experiments`` to ``ntk_adv`` only.

Options are generated from the (nested) config dataclasses: every leaf field is ``--path.to-field``
(``--train.lr``, ``--data.n-train``); its bare name (``--lr``, ``--n-train``) is an alias when no other leaf
of the tree has that name; a config class may declare more aliases in a ``CLI_ALIASES`` class variable
(alias -> field path relative to that class; :class:`ntk_adv.data.DataSpec` declares ``--dataset``,
``--data-seed``, ``--data-root``). Each option's help is the field's trailing ``# comment`` (or the string
literal right after it) in the dataclass source; ``Literal`` fields list and enforce their choices; tuple
fields take several values, separated by spaces or commas.

Help answers without importing JAX: the top-level listing reads module docstrings from source, and a
subcommand's options are described by a JSON spec cached per source version (``$XDG_CACHE_HOME/ntk-adv``);
only a cache miss imports the experiment module.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import os
import sys
import tokenize
import typing
from collections.abc import Mapping
from pathlib import Path

from ntk_adv.guards import (
    EXIT_BACKEND,
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_OS,
    EXIT_RESOURCES,
    EXIT_USAGE,
    INT_MAX,
    BackendFailure,
    DryRun,
    OutputLocked,
    ResourceLimit,
    check_plan,
    finite_gb,
    is_out_of_memory,
    likely_option,
    probe_address,
)
from ntk_adv.guards import _role as _count_role

Commands = Mapping[str, str]  # subcommand -> importable module with COMMAND, Config and main

RAY_ADDRESS_HELP = (
    "address HOST:PORT of a running Ray cluster (also RAY_ADDRESS with --backend ray); implies --backend "
    "ray. "
    "Workers get ntk_adv via the Ray runtime_env; file data must sit on a path all nodes share"
)
SPEC_VERSION = 3  # bump when the JSON option spec changes shape


# ----------------------------------------------------------------------------------------------------
# Field documentation from the dataclass source
# ----------------------------------------------------------------------------------------------------


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> one-line doc: the trailing ``# comment`` of its line, else a string literal right after
    the field (an attribute docstring). Inherited fields are looked up in the base classes."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        docs.update(_class_field_docs(source))
    return docs


def _class_field_docs(source: str) -> dict[str, str]:
    import textwrap

    source = textwrap.dedent(source)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    cls_node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if cls_node is None:
        return {}
    out = {}
    body = cls_node.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        text = next(
            (
                comments[ln]
                for ln in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                if ln in comments
            ),
            "",
        )
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            not text
            and isinstance(nxt, ast.Expr)
            and isinstance(getattr(nxt, "value", None), ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            text = " ".join(nxt.value.value.split())
        if text:
            out[name] = text
    return out


# ----------------------------------------------------------------------------------------------------
# Option specs: a JSON-able description of every option of a config tree
# ----------------------------------------------------------------------------------------------------


def _describe_type(tp) -> dict:
    """kind (scalar | tuple | bool), base (int | float | str), optional, choices."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    optional = False
    if origin is typing.Union or (origin is not None and type(None) in args and origin is not tuple):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        tp = rest[0] if len(rest) == 1 else str
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    kind = "scalar"
    if origin is tuple:
        kind = "tuple"
        tp = args[0] if args else str
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    choices = None
    if origin is typing.Literal:
        choices = list(args)
        tp = type(args[0]) if args else str
    if tp is bool and kind == "scalar":
        kind = "bool"
    base = tp.__name__ if tp in (int, float, str, bool) else "str"
    return {"kind": kind, "base": base, "optional": optional, "choices": choices}


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def _leaves(cls: type, default, prefix: str = ""):
    """(path, type, default value, doc, owner class) of every leaf field, depth first."""
    hints = typing.get_type_hints(cls, include_extras=False)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True) is False:  # set by the command line itself (run.ray_address)
            continue
        value = getattr(default, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _leaves(type(value), value, path + ".")
        else:
            yield path, hints.get(f.name, str), value, docs.get(f.name, ""), cls


def _class_aliases(cls: type, default, prefix: str = "") -> dict[str, str]:
    """alias -> full dotted path, from every ``CLI_ALIASES`` class variable in the tree (outermost wins)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for k, v in _class_aliases(type(value), value, prefix + f.name + ".").items():
                out.setdefault(k, v)
    for alias, rel in (getattr(cls, "CLI_ALIASES", None) or {}).items():
        out[alias] = prefix + rel
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_specs(config_cls: type, glossary: Mapping[str, str] | None = None) -> list[dict]:
    """The options of ``config_cls`` as JSON-able dicts: dest (dotted field path), flags (primary first, then
    aliases), kind/base/optional/choices, default and a one-line help."""
    glossary = glossary or {}
    default = config_cls()
    leaves = list(_leaves(config_cls, default))
    paths = {p for p, *_ in leaves}
    counts: dict[str, int] = {}
    for p, *_ in leaves:
        counts[p.rsplit(".", 1)[-1]] = counts.get(p.rsplit(".", 1)[-1], 0) + 1
    aliases = _class_aliases(config_cls, default)
    taken = set(paths)
    specs = []
    for path, tp, value, doc, _owner in leaves:
        leaf = path.rsplit(".", 1)[-1]
        flags = [_flag(path)]
        aliased = path in aliases.values()
        if "." in path and counts[leaf] == 1 and leaf not in taken and not aliased:
            flags.append(_flag(leaf))
            taken.add(leaf)
        for alias, target in aliases.items():
            if target == path and alias not in taken and _flag(alias) not in flags:
                flags.append(_flag(alias))
                taken.add(alias)
        spec = {
            "dest": path,
            "flags": flags,
            **_describe_type(tp),
            "default": _jsonable(value),
            "help": doc or glossary.get(path, glossary.get(leaf, "")),
        }
        specs.append(spec)
    return specs


def _show(v) -> str:
    if isinstance(v, list):
        return " ".join(map(str, v)) if v else "none"
    return "none" if v is None or v == "" else str(v)


def _help_text(spec: dict) -> str:
    parts = [spec["help"].rstrip(".")] if spec["help"] else []
    if spec["choices"]:
        parts.append("one of " + ", ".join(map(str, spec["choices"])))
    if spec["kind"] == "tuple":
        parts.append("several values: spaces or commas")
    text = "; ".join(parts)
    default = _show(spec["default"])
    if spec["kind"] == "bool":
        default = "on" if spec["default"] else "off"
    return (text + " " if text else "") + f"(default: {default})"


BASES = {"int": int, "float": float, "str": str, "bool": bool}


def _parse_value(spec: dict):
    base = BASES[spec["base"]]
    label = spec["flags"][-1].lstrip("-").rsplit(".", 1)[-1].replace("-", " ")

    def one(token: str):
        token = token.strip()
        if spec["optional"] and token.lower() == "none":
            return None
        try:
            v = base(token)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"invalid {base.__name__} value {token!r}") from err
        counts = base is int or (base is float and _count_role(spec["dest"].rsplit(".", 1)[-1]) is not None)
        if counts and v == v and abs(v) != float("inf") and not -INT_MAX - 1 <= v <= INT_MAX:
            raise argparse.ArgumentTypeError(  # a count (width, seeds, points, d) typed float to admit inf
                f"{token} is out of range: integer options take at most {INT_MAX}"
            )
        if spec["choices"] is not None and v not in spec["choices"]:
            raise argparse.ArgumentTypeError(
                f"unknown {label} {token!r}; expected one of {', '.join(map(str, spec['choices']))}"
            )
        return v

    if spec["kind"] != "tuple":
        one.__name__ = base.__name__
        return one

    def many(token: str) -> list:
        parts = [p for p in token.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"empty value {token!r}")
        try:
            return [one(p) for p in parts]
        except argparse.ArgumentTypeError as err:
            if str(err).startswith("unknown") or "out of range" in str(err):
                raise
            raise argparse.ArgumentTypeError(f"invalid {base.__name__} in {token!r}") from err

    many.__name__ = base.__name__
    return many


def add_options(parser: argparse.ArgumentParser, specs: list[dict]) -> None:
    """Add one argparse option per spec (see :func:`option_specs`)."""
    for spec in specs:
        metavar = spec["dest"].rsplit(".", 1)[-1].upper()
        if spec["kind"] == "bool":
            parser.add_argument(
                *spec["flags"],
                dest=spec["dest"],
                action=argparse.BooleanOptionalAction,
                default=spec["default"],
                help=_help_text(spec),
            )
        elif spec["kind"] == "tuple":
            parser.add_argument(
                *spec["flags"],
                dest=spec["dest"],
                type=_parse_value(spec),
                nargs="+",
                default=tuple(spec["default"]),
                metavar=metavar,
                help=_help_text(spec),
            )
        else:
            parser.add_argument(
                *spec["flags"],
                dest=spec["dest"],
                type=_parse_value(spec),
                default=spec["default"],
                metavar=metavar,
                help=_help_text(spec),
            )


def add_config_arguments(parser: argparse.ArgumentParser, config_cls, glossary=None) -> None:
    add_options(parser, option_specs(config_cls, glossary))


def config_from_args(args: argparse.Namespace, config_cls, prefix: str = "", default=None):
    """Rebuild the (nested) config from parsed options (dests are dotted field paths). A nested config's
    defaults are the parent's default instance of it (``default``), so sub-configs need no defaults of their
    own (e.g. ``TwoLayerConfig.width``)."""
    default = config_cls() if default is None else default
    kwargs = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(default, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            kwargs[f.name] = config_from_args(args, type(value), path + ".", value)
        elif hasattr(args, path):
            v = getattr(args, path)
            kwargs[f.name] = tuple(item for token in v for item in token) if isinstance(v, list) else v
        else:
            kwargs[f.name] = value
    return config_cls(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Lazy command metadata: docstrings from source, option specs cached by source version
# ----------------------------------------------------------------------------------------------------


def _module_file(module_name: str) -> Path | None:
    spec = importlib.util.find_spec(module_name)
    return Path(spec.origin) if spec is not None and spec.origin else None


def module_summary(module_name: str) -> tuple[str, str]:
    """(first line, full text) of a module's docstring, read from its source without importing it."""
    path = _module_file(module_name)
    try:
        doc = ast.get_docstring(ast.parse(path.read_text())) if path else None
    except (OSError, SyntaxError):
        doc = None
    doc = (doc or module_name).strip()
    first = " ".join(doc.split("\n\n")[0].split())
    cut = first.find(". ")
    return (first[: cut + 1] if cut > 0 else first), doc


def _source_version(module_name: str) -> str:
    """Hash of the sources that define a command's options: this package and the application package that
    holds ``module_name`` (paths, sizes and mtimes - cheap), so a cached spec is never served for other
    code."""
    h = hashlib.sha256(f"{SPEC_VERSION}:{module_name}".encode())
    roots = {Path(__file__).resolve().parent}
    top = importlib.util.find_spec(module_name.split(".")[0])
    for loc in (top.submodule_search_locations or []) if top is not None else []:
        roots.add(Path(loc).resolve())
    for root in sorted(roots):
        for p in sorted(root.rglob("*.py")):
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ntk-adv" / "cli"


def default_out(module, name: str) -> str:
    """The output directory a command writes to by default: its ``main``'s ``out`` default, else
    runs/<name>."""
    try:
        default = inspect.signature(module.main).parameters["out"].default
    except (KeyError, TypeError, ValueError):
        default = inspect.Parameter.empty
    return str(default) if default not in (inspect.Parameter.empty, None) else str(Path("runs") / name)


def command_specs(module_name: str, glossary: Mapping[str, str] | None = None, name: str = "") -> dict:
    """``{"options": option specs, "out": default output directory}`` of one command, from the cache when the
    sources did not change, else by importing the module (and caching the result; an unwritable cache is
    ignored)."""
    path = _cache_dir() / f"{module_name}-{_source_version(module_name)}.json"
    try:
        cached = json.loads(path.read_text())
        if _valid_spec(cached):
            return cached
    except (OSError, ValueError):
        pass  # missing, unreadable, or not JSON: rebuilt below (a wrong-shape file too)
    module = importlib.import_module(module_name)
    spec = {"options": option_specs(module.Config, glossary), "out": default_out(module, name or module_name)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(spec))
        os.replace(tmp, path)
    except OSError:
        pass
    return spec


SPEC_KEYS = frozenset({"dest", "flags", "kind", "base", "optional", "choices", "default", "help"})


def _valid_spec(spec) -> bool:
    """A cached command spec has the shape :func:`command_specs` writes (else it is rebuilt, never used)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("out"), str):
        return False
    options = spec.get("options")
    return isinstance(options, list) and all(
        isinstance(o, dict)
        and SPEC_KEYS <= o.keys()
        and isinstance(o["dest"], str)
        and isinstance(o["flags"], list)
        and o["flags"]
        and all(isinstance(f, str) and f.startswith("--") for f in o["flags"])
        and o["kind"] in ("scalar", "tuple", "bool")
        and o["base"] in BASES
        and (o["choices"] is None or isinstance(o["choices"], list))
        and isinstance(o["help"], str)
        and (o["kind"] != "tuple" or isinstance(o["default"], list))
        for o in options
    )


def _common_options(p: argparse.ArgumentParser, out: str, specs: list[dict]) -> None:
    p.add_argument("--out", type=Path, default=Path(out), help=f"output directory (default: {out})")
    if any(s["dest"].rsplit(".", 1)[-1] == "backend" for s in specs):
        p.add_argument("--ray-address", metavar="HOST:PORT", default=None, help=RAY_ADDRESS_HELP)
    p.add_argument(
        "--max-memory",
        metavar="GB",
        type=finite_gb,
        default=None,
        help="memory limit of the plan's estimate, in GB (default: this machine's physical memory); a plan "
        "above it is refused before any work",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors (or NTK_ADV_DEBUG=1)")


def package_version(dist: str = "ntk-adv") -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: reads the installed version only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ntk-adv {package_version()}")
        parser.exit(0)


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``ntk-adv COMMAND: error: ...`` and a pointer to ``--help``, no usage
    block (the suite's rule for bad input: one line naming the option)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(
    commands: Commands,
    selected: str | typing.Collection[str] | None = None,
    glossary: Mapping[str, str] | None = None,
) -> argparse.ArgumentParser:
    """The ``ntk-adv`` parser with one subcommand per entry of ``commands``. Only the ``selected``
    subcommand(s) get their options (describing a command may import it); the others are listed by their
    docstring's first line, read from source."""
    selected = {selected} if isinstance(selected, str) else set(selected or ())
    parser = OneLineParser(
        prog="ntk-adv",
        description="Adversarial examples on wide two-layer networks "
        "and their NTK limits: one subcommand per experiment.",
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name, module_name in commands.items():
        summary, doc = module_summary(module_name)
        p = sub.add_parser(
            name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        if name in selected:
            spec = command_specs(module_name, glossary, name)
            add_options(p, spec["options"])
            _common_options(p, spec["out"], spec["options"])
        p.set_defaults(_module=module_name)
    return parser


def os_error_message(err: OSError) -> str:
    """One line naming the path(s) and the cause of an OS-level failure."""
    cause = err.strerror or str(err)
    if err.filename is None:
        return cause
    where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 is not None else "")
    return f"{where}: {cause}"


def _snapshot(out: Path) -> dict[Path, int]:
    if not out.is_dir():
        return {}
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def written_files(out: Path, before: dict[Path, int]) -> list[Path]:
    """Files under ``out`` created or modified since ``before`` (a :func:`_snapshot`)."""
    after = _snapshot(out)
    return sorted(p for p, t in after.items() if before.get(p) != t)


def outputs_line(prefix: str, out: Path, files: list[Path]) -> str:
    """``<prefix>: outputs in OUT/: a, b, c (+ store/: n records)``: files under a ``store``/``records``
    folder are counted, the others named relative to ``out``."""
    records = [p for p in files if "records" in p.relative_to(out).parts]
    named = [str(p.relative_to(out)) for p in files if p not in records]
    text = f"{prefix}: outputs in {out}/"
    text += ": " + ", ".join(named) if named else ": no new files"
    if records:
        text += f" (+ {len(records)} stored cell record(s))"
    return text


def _ray_address(args: argparse.Namespace) -> str | None:
    """The Ray cluster of ``--ray-address`` (or of ``RAY_ADDRESS`` with ``--backend ray``), probed; an
    ``inprocess`` backend becomes ``ray``, another one with an address is refused. Read, never written: the
    address reaches the engine in the config's ``run.ray_address`` (:func:`_with_ray_address`)."""
    backends = [k for k in vars(args) if k.rsplit(".", 1)[-1] == "backend"]
    address = getattr(args, "ray_address", None)
    if not address and any(getattr(args, dest) == "ray" for dest in backends):
        address = os.environ.get("RAY_ADDRESS") or None
    if not address:
        return None
    for dest in backends:
        if getattr(args, dest) not in ("inprocess", "ray"):
            raise ValueError(
                f"--ray-address {address} runs cells on a Ray cluster, but --backend is "
                f"{getattr(args, dest)}: give one or the other"
            )
    probe_address(address)  # fail in seconds, not after Ray's minutes of retries
    for dest in backends:
        if getattr(args, dest) == "inprocess":
            setattr(args, dest, "ray")
    return address


def _with_ray_address(cfg, args: argparse.Namespace, address: str | None):
    """``cfg`` with ``ray_address`` set on the execution sub-config(s) holding a backend option."""
    if not address:
        return cfg
    from ntk_adv.engine import set_field

    for dest in (k for k in vars(args) if k.rsplit(".", 1)[-1] == "backend"):
        cfg = set_field(
            cfg, dest.rsplit(".", 1)[0] + ".ray_address" if "." in dest else "ray_address", address
        )
    return cfg


def _selected(argv: list[str], commands: Commands) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None) if argv else None


def _flags(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> dict[str, str]:
    """dest -> the flag naming it: the one typed in ``argv`` if any, else the shortest."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            for a in action.choices[command]._actions:
                if a.option_strings:
                    typed = [f for f in a.option_strings if f in argv]
                    out[a.dest] = (typed or sorted(a.option_strings, key=len))[0]
    return out


def main(argv: list[str] | None, commands: Commands, glossary: Mapping[str, str] | None = None) -> int:
    """Run a subcommand of ``commands``. Every failure ends in one line and a documented exit code (README,
    "Failures"; :mod:`ntk_adv.guards`): bad options and data 2; OS-level failures (unwritable or read-only
    output, a file in the way, a full disk) 1, naming the path and the cause; a plan above the memory or cell
    limit (checked from the options before any work) or an XLA out-of-memory error 3; an output directory in
    use by another run 4; a dead worker process or an unreachable Ray cluster 5; Ctrl-C 130 (finished cells
    stay in the store). ``--debug`` or ``NTK_ADV_DEBUG=1`` shows the full traceback instead. The run holds
    ``OUT/.ntk-adv.lock`` while it writes, writes ``OUT/manifest.json`` last, and prints where it wrote its
    outputs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("NTK_ADV_DEBUG", "") not in ("", "0") or "--debug" in argv
    prefix = "ntk-adv"
    options: dict = {}
    flags: dict[str, str] = {}

    def fail(code: int, msg: str) -> typing.NoReturn:
        sys.stderr.write(f"{prefix}: {msg}\n")
        raise SystemExit(code)

    try:
        selected = _selected(argv, commands)
        parser = build_parser(commands, selected if selected in commands else None, glossary)
        args = parser.parse_args(argv)
        debug = debug or args.debug
        prefix = f"ntk-adv {args.command}"
        from ntk_adv.results import output_lock, sweep_temp_files, write_manifest

        flags = _flags(parser, args.command, argv)
        options = {k: v for k, v in vars(args).items() if not k.startswith("_")}
        check_plan(options, args.max_memory, lambda dest: flags.get(dest, "--" + dest.replace("_", "-")))
        address = _ray_address(args)
        module = importlib.import_module(args._module)
        if os.environ.get("NTK_ADV_JAX_CACHE"):
            # Opt-in: jaxlib 0.5.3 was seen to return wrong (all-zero) L-BFGS perturbations from a cached
            # executable, so the persistent compilation cache is off unless asked for.
            from ntk_adv.engine import enable_compilation_cache

            enable_compilation_cache(os.environ["NTK_ADV_JAX_CACHE"])
        cfg = _with_ray_address(config_from_args(args, module.Config), args, address)
        with output_lock(args.out):  # one run per output directory: a second is refused naming this one
            sweep_temp_files(args.out)  # debris of an earlier killed run
            before = _snapshot(args.out)
            try:
                module.main(cfg, args.out, progress=not args.quiet)
            except DryRun as plan:  # the plan of the first sweep, before any work: exit 0
                print(plan)
                return 0
            _write_parquet(cfg, args.out)
            written = written_files(args.out, before)
            if written:  # a listing-only run (e.g. reproduce --list) writes nothing and says nothing more
                manifest = write_manifest(args.out, written)
                print(outputs_line(prefix, args.out, sorted({*written, manifest})))
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        fail(
            EXIT_INTERRUPTED,
            "interrupted; finished cells are kept in the store, re-run the same command to resume",
        )
    except ResourceLimit as err:
        if debug:
            raise
        fail(EXIT_RESOURCES, f"error: {err}")
    except OutputLocked as err:
        if debug:
            raise
        fail(EXIT_BUSY, f"error: {err}")
    except BackendFailure as err:
        if debug:
            raise
        fail(EXIT_BACKEND, f"error: {err}")
    except (ValueError, FileNotFoundError) as err:
        if debug:
            raise
        msg = os_error_message(err) if isinstance(err, OSError) and err.errno is not None else str(err)
        fail(EXIT_USAGE, f"error: {_one_line(msg)}")
    except OSError as err:
        if debug:
            raise
        fail(EXIT_OS, f"error: {_one_line(os_error_message(err))}")
    except (RuntimeError, MemoryError) as err:
        if debug or not is_out_of_memory(err):
            raise
        likely = likely_option(options, lambda dest: flags.get(dest, "--" + dest.replace("_", "-")))
        fail(
            EXIT_RESOURCES,
            f"error: out of memory while computing (XLA: {_one_line(str(err))[:120]}); the largest arrays "
            f"come from {likely}: lower them (finished cells are kept in the store)",
        )
    return 0


def _write_parquet(cfg, out: Path) -> None:
    """``--parquet`` (the ``run.parquet`` execution option): OUT/results.parquet beside the results.csv the
    command wrote (:func:`ntk_adv.results.write_parquet`); a command that wrote no results.csv is refused."""
    if not getattr(getattr(cfg, "run", None), "parquet", False):
        return
    from ntk_adv.results import write_parquet

    if not (Path(out) / "results.csv").is_file():
        raise ValueError(f"--parquet: the command wrote no {Path(out) / 'results.csv'} to convert")
    write_parquet(Path(out) / "results.csv", Path(out) / "results.parquet")


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = [
    "add_config_arguments",
    "add_options",
    "build_parser",
    "command_specs",
    "config_from_args",
    "field_docs",
    "main",
    "module_summary",
    "option_specs",
    "os_error_message",
    "outputs_line",
]
