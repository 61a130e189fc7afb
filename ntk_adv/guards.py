"""Limits checked before work, and the exit codes of the ``ntk-adv`` command (imports no JAX).

* :func:`plan_estimate` - a conservative memory and cell-count estimate of a command from its options alone
  (the largest arrays: networks ``seeds x width x d``, hidden activations ``seeds x width x N``, data
  ``N x d``, kernel matrices ``N x N``, benchmark matmuls ``n x n``, line grids ``grid x pairs x width``), and
  :func:`check_plan`, which refuses a plan above the machine's physical memory (or ``--max-memory``) or above
  :data:`MAX_CELLS` cells in one line naming the option - before JAX is imported, so an oversize option is
  never an XLA abort or an out-of-memory traceback;
* :func:`probe_address` - a Ray address is probed with a short TCP connect before Ray is asked to join it
  (Ray itself retries for minutes);
* :func:`is_out_of_memory` - recognises XLA's RESOURCE_EXHAUSTED / out-of-memory errors.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping

# Exit codes of the ntk-adv command (README, "Failures").
EXIT_OK = 0
EXIT_OS = 1  # an OS-level failure: unwritable / full output location, a file in the way
EXIT_USAGE = 2  # bad options or data
EXIT_RESOURCES = 3  # the plan exceeds the memory or cell limit, or XLA ran out of memory
EXIT_BUSY = 4  # the output directory is in use by another run
EXIT_BACKEND = 5  # a worker process died, or the Ray cluster cannot be reached
EXIT_INTERRUPTED = 130  # Ctrl-C

INT_MAX = 2**31 - 1  # integer options are at most this (JAX indexes with int32)
MAX_CELLS = 1_000_000  # cells of one plan (one stored record each)
BYTES = 8  # per number: conservative (float64 / workspace)
FILE_DIMS = {"mnist": 784, "fmnist": 784, "cifar10": 3072}


class ResourceLimit(Exception):
    """A plan exceeds the memory or cell limit (exit code 3)."""


class OutputLocked(RuntimeError):
    """Another run holds the output directory's lock (:func:`ntk_adv.results.output_lock`; exit code 4)."""


class BackendFailure(RuntimeError):
    """A worker process died or a cluster cannot be reached (exit code 5)."""


class DryRun(Exception):
    """Raised by :func:`ntk_adv.engine.run_sweep` with ``dry_run=True`` before any work, and by a command
    that runs several sweeps once it has planned them all (:class:`ntk_adv.engine.Planner`).

    One sweep: ``plan`` holds the counts: ``total``; ``fresh`` (in the store and up to date); ``kept`` (stale
    records kept); ``compute``, of them ``stale``, ``corrupt`` and ``missing``; ``chunks`` and ``backend``.
    ``seconds`` is the estimated time of the cells to compute (None: no estimate) and ``estimate`` says where
    it comes from (:func:`ntk_adv.engine.estimate_time`). A sweep whose cells are chosen from an earlier
    sweep's results cannot be counted without computing: ``depends`` says what it waits for, ``plan`` is
    empty. ``label`` names the sweep inside its command (a panel, a part).

    Several sweeps (:meth:`of`): ``sweeps`` lists one single-sweep :class:`DryRun` per sweep (nested
    commands flattened, labels joined with ``/``) and ``plan`` holds the totals (``total``, ``fresh``,
    ``kept``, ``compute``, ``chunks``; ``unestimated``: sweeps with cells to compute but no estimate;
    ``depends``: sweeps not counted). ``str(err)`` is the whole plan the CLI prints (exit 0): one line for
    one sweep, else a line per sweep and a total line. Defined here with the CLI's other outcomes."""

    def __init__(
        self,
        kind: str,
        plan: dict,
        *,
        seconds: float | None = None,
        estimate: str = "",
        depends: str = "",
        sweeps: tuple[DryRun, ...] = (),
        label: str = "",
    ):
        self.kind, self.plan, self.sweeps, self.label = kind, plan, tuple(sweeps), label
        self.seconds, self.estimate, self.depends = seconds, estimate, depends
        super().__init__(self._text())

    @classmethod
    def of(cls, kind: str, parts: list[DryRun]) -> DryRun:
        """The plan of command ``kind`` that runs the sweeps of ``parts`` (single- or multi-sweep plans, in
        order); a single sweep is returned as it is."""
        sweeps = tuple(s for p in parts for s in (p.sweeps or (p,)))
        if len(sweeps) == 1:
            return sweeps[0]
        counted = [s for s in sweeps if not s.depends]
        total = {k: sum(s.plan[k] for s in counted) for k in ("total", "fresh", "kept", "compute", "chunks")}
        timed = [s for s in counted if s.plan["compute"]]
        known = [s.seconds for s in timed if s.seconds is not None]
        total["unestimated"] = len(timed) - len(known)
        total["depends"] = len(sweeps) - len(counted)
        sources = sorted({s.estimate.split(":")[0] for s in timed if s.seconds is not None})
        seconds = sum(known) if known else None
        return cls(kind, total, seconds=seconds, estimate=", ".join(sources), sweeps=sweeps)

    def labelled(self, label: str) -> DryRun:
        """This plan with ``label`` put before the labels of its sweeps."""
        if not label:
            return self
        if self.sweeps:
            return DryRun.of(self.kind, [s.labelled(label) for s in self.sweeps])
        return DryRun(
            self.kind,
            self.plan,
            seconds=self.seconds,
            estimate=self.estimate,
            depends=self.depends,
            label="/".join(x for x in (label, self.label) if x),
        )

    def _name(self) -> str:
        return f"{self.kind} [{self.label}]" if self.label else self.kind

    def _text(self) -> str:
        if not self.sweeps:
            return f"{self._name()}: dry run: {self._line()}; nothing computed"
        p = self.plan
        lines = [f"{self.kind}: dry run of {len(self.sweeps)} sweeps; nothing computed"]
        lines += [f"  {s._name()}: {s._line()}" for s in self.sweeps]
        if not p["compute"]:
            when = "0 s (nothing to compute)"
        elif self.seconds is None:
            when = "no estimate (no timing recorded)"
        elif p["unestimated"]:
            when = (
                f"at least {_duration(self.seconds)} (from {self.estimate}; {p['unestimated']} sweeps with "
                f"no timing recorded not counted)"
            )
        else:
            when = f"{_duration(self.seconds)} (from {self.estimate})"
        depends = (
            f"; plus {p['depends']} sweep(s) not counted: they depend on earlier sweeps' results"
            if p["depends"]
            else ""
        )
        kept = f", {p['kept']} stale kept (--accept-stale)" if p["kept"] else ""
        lines.append(
            f"{self.kind}: total: {p['total']} cells, {p['fresh']} already in the store and fresh{kept}, "
            f"{p['compute']} to compute in {p['chunks']} chunks; estimated time {when}{depends}"
        )
        return "\n".join(lines)

    def _line(self) -> str:
        """This sweep's plan as text (no name)."""
        if self.depends:
            return f"depends on previous sweep: {self.depends}"
        p = self.plan
        why = ", ".join(f"{p[k]} {k}" for k in ("missing", "stale", "corrupt") if p[k]) or "none"
        kept = f", {p['kept']} stale kept (--accept-stale)" if p["kept"] else ""
        if not p["compute"]:
            when = "0 s (nothing to compute)"
        elif self.seconds is None:
            when = self.estimate or "no estimate (no timing recorded)"
        else:
            when = f"{_duration(self.seconds)} (from {self.estimate})"
        return (
            f"{p['total']} cells, {p['fresh']} already in the store and fresh{kept}, "
            f"{p['compute']} to compute ({why}) in {p['chunks']} chunks on backend {p['backend']}; "
            f"estimated time {when}"
        )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def physical_memory() -> int:
    """Bytes of physical memory of this machine (``os.sysconf``)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 << 30


def _ints(v) -> list[int]:
    items = v if isinstance(v, (list, tuple)) else [v]
    out = []
    for x in items:
        if isinstance(x, (list, tuple)):
            out += _ints(x)
        elif isinstance(x, int) and not isinstance(x, bool):
            out.append(x)
        elif isinstance(x, float) and math.isfinite(x) and x.is_integer():  # e.g. --widths 64 inf
            out.append(int(x))
    return out


def _role(leaf: str) -> str | None:
    if leaf in ("width", "widths") or leaf.endswith(("_width", "_widths")):
        return "width"
    if leaf == "seeds" or leaf.endswith("_seeds"):
        return "seeds"
    if leaf in ("n_train", "n_test", "n_kernel", "n_points", "n_synthetic", "n_attack") or re.search(
        r"(^|_)n(_train|_test)?$", leaf
    ):
        return "n"
    if leaf in ("d", "dims") or leaf.endswith("_d"):
        return "d"
    if leaf == "matmul_sizes":
        return "matmul"
    if leaf == "grid":
        return "grid"
    if leaf == "n_pairs":
        return "pairs"
    return None


def plan_estimate(options: Mapping[str, object]) -> tuple[list[tuple[float, str, list[str]]], int, list[str]]:
    """From parsed options (dest -> value; tuples as lists): the memory terms ``[(bytes, what, [dests])]``
    (largest first), the number of cells (seeds x the product of the lengths of all list options) and the
    dests that drive the cell count. Deliberately simple and conservative: each term is a product of option
    maxima."""
    by_role: dict[str, tuple[int, str]] = {}
    for dest, value in options.items():
        role = _role(dest.rsplit(".", 1)[-1])
        vals = _ints(value)
        if role and vals and max(vals) > by_role.get(role, (0, ""))[0]:
            by_role[role] = (max(vals), dest)
    dataset = next((v for k, v in options.items() if k.rsplit(".", 1)[-1] in ("name", "dataset")), None)
    d_file = FILE_DIMS.get(dataset, 64) if isinstance(dataset, str) else 64
    w, w_dest = by_role.get("width", (1, ""))
    s, s_dest = by_role.get("seeds", (1, ""))
    n, n_dest = by_role.get("n", (0, ""))
    d, d_dest = by_role.get("d", (0, ""))
    d, d_dest = (d, d_dest) if d >= d_file else (d_file, d_dest)
    m, m_dest = by_role.get("matmul", (0, ""))
    g, g_dest = by_role.get("grid", (0, ""))
    pairs, p_dest = by_role.get("pairs", (1, ""))
    terms = [
        (
            3.0 * s * w * d * BYTES,
            "network weights, gradients and momenta (seeds x width x d)",
            [w_dest, s_dest, d_dest],
        ),
        (2.0 * s * w * n * BYTES, "hidden activations (seeds x width x points)", [w_dest, s_dest, n_dest]),
        (2.0 * n * d * BYTES, "data (points x d)", [n_dest, d_dest]),
        (3.0 * n * n * BYTES, "kernel matrices (points x points)", [n_dest]),
        (3.0 * m * m * BYTES, "matrix products (size x size)", [m_dest]),
        (1.0 * g * pairs * max(w, d) * BYTES, "line grids (grid x pairs x width)", [g_dest, p_dest, w_dest]),
    ]
    terms = sorted(((b, what, [x for x in dests if x]) for b, what, dests in terms), key=lambda t: -t[0])
    cells, cell_dests = max(s, 1), [s_dest] if s_dest else []
    for dest, value in options.items():
        if isinstance(value, (list, tuple)) and len(value) > 1:
            cells *= len(value)
            cell_dests.append(dest)
    return terms, cells, cell_dests


def check_plan(
    options: Mapping[str, object],
    max_memory_gb: float | None = None,
    flag: Callable[[str], str] = lambda dest: "--" + dest.replace("_", "-"),
) -> None:
    """Raise :class:`ResourceLimit` (one line naming the options) when the plan's conservative memory
    estimate exceeds ``max_memory_gb`` (default: the machine's physical memory) or it has more than
    :data:`MAX_CELLS` cells. ``flag(dest)`` names an option as the user typed it."""
    terms, cells, cell_dests = plan_estimate(options)

    def named(dests):
        return ", ".join(f"{flag(x)} {_show(options[x])}" for x in dests if x in options)

    if cells > MAX_CELLS:
        raise ResourceLimit(
            f"{named(cell_dests) or 'the options'}: the plan has {cells:,} cells, more than the limit of "
            f"{MAX_CELLS:,} (one stored record each); lower them"
        )
    limit = physical_memory() if max_memory_gb is None else max_memory_gb * 1e9
    total = sum(b for b, _, _ in terms)
    if total > limit:
        biggest, what, dests = terms[0]
        raise ResourceLimit(
            f"{named(dests) or 'the options'}: the plan needs about {_gb(total)} ({what}: {_gb(biggest)}), "
            f"more than {'--max-memory' if max_memory_gb is not None else 'this machine'}'s {_gb(limit)}; "
            f"lower them, or raise --max-memory GB if you know better"
        )


def likely_option(options: Mapping[str, object], flag: Callable[[str], str] | None = None) -> str:
    """The options behind the largest term of the memory estimate, for an out-of-memory message."""
    flag = flag or (lambda dest: "--" + dest.replace("_", "-"))
    terms, _, _ = plan_estimate(options)
    dests = [x for x in terms[0][2] if x in options] if terms else []
    return ", ".join(f"{flag(x)} {_show(options[x])}" for x in dests) or "the sizes of the run"


def _show(v) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(_show(x) for x in v)
    return str(v)


def _gb(b: float) -> str:
    return f"{b / 1e9:,.1f} GB" if b < 1e15 else f"{b / 1e9:.1e} GB"


def is_out_of_memory(err: BaseException) -> bool:
    """An XLA / numpy out-of-memory error (RESOURCE_EXHAUSTED, "Out of memory", MemoryError)."""
    if isinstance(err, MemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower())


def probe_address(address: str, timeout: float = 3.0) -> None:
    """Raise :class:`BackendFailure` (one line) unless something accepts a TCP connection at the Ray address
    ``HOST:PORT`` (or ``ray://HOST:PORT``) within ``timeout`` seconds. ``auto``/``local`` and addresses
    without a port are left to Ray."""
    addr = address.strip()
    if addr.startswith("ray://"):
        addr = addr[len("ray://") :]
    host, sep, port = addr.rpartition(":")
    if not sep or not host or addr in ("auto", "local"):
        return
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ray-address {address}: the port {port!r} is not a port number")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        cause = err.strerror or type(err).__name__ if not isinstance(err, TimeoutError) else "timed out"
        raise BackendFailure(
            f"--ray-address {address}: no Ray cluster answers at {host}:{port} ({cause}); start one "
            f"(ray start --head) or fix the address"
        ) from None
