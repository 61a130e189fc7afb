"""The cells of the linearity experiment for :func:`ntk_adv.engine.run_rows`: which units of work the parts
split into, what each reads, and the one module-level function that runs them (it is pickled to process and
Ray workers).

Units (:class:`Unit`, ``part``):

* ``a``: part (a), every input dimension of ``dims``; one cell per seed (seeds of a chunk run batched);
* ``rays_models``: parts (b, c) of the deterministic models (limit, logistic regression, RBF machine); one
  cell, seed 0;
* ``rays``: parts (b, c) of the finite nets, every width of ``widths``; one cell per seed;
* ``magnitude``: part (c)'s paper-eps comparison on one data set (``tag`` 'data' or 'mnist'); one unit
  (its transfer and paired measurements couple the seeds with the deterministic models), seed 0;
* ``d``: part (d), every training mode; one cell per seed.

A unit is an :class:`ntk_adv.engine.Unit` whose settings keep only what that part reads (:data:`READS`;
every other field is the :class:`Config` default, ``parts`` and ``run`` included), so a cell's identity in
the store changes only when its own settings do; ``data`` is the data set it reads (None for the synthetic
data of part a); a ``magnitude`` unit's ``tag`` label names its data set.
"""

from __future__ import annotations

import jax.numpy as jnp

from ntk_adv import engine
from ntk_adv.data import DataSpec, load_spec

from . import adversarial, dimension, magnitude, rays
from .config import Config

_RAYS = ("net", "train", "eps", "ray_t", "ray_points", "n_rays", "rbf_scale")
READS: dict[str, tuple[str, ...]] = {
    "a": (
        "net",
        "seeds",
        "seed",
        "dims",
        "synthetic",
        "n_synthetic",
        "n_points",
        "dim_width",
        "dim_eps",
        "dim_lr",
        "dim_steps",
    ),
    "rays_models": _RAYS,
    "rays": (*_RAYS, "seeds", "seed", "widths"),
    "magnitude": ("net", "train", "seeds", "seed", "paper_eps", "rbf_scale"),
    "d": ("net", "train", "seeds", "seed", "eps", "adv_eps", "adv_alpha"),
}
SEEDED = ("a", "rays_models", "rays", "d")  # rows carry the seed of their cell; the others are whole units


def unit(cfg: Config, part: str, data: DataSpec | None = None, tag: str = "") -> engine.Unit:
    """The unit ``part`` of ``cfg``: its settings (:data:`READS`) on the defaults of everything else."""
    labels = {"tag": tag} if tag else {}
    return engine.unit(part, cfg, reads=READS[part], data=data, **labels)


def plan(cfg: Config) -> tuple[list[tuple[engine.Unit, int]], list[tuple[engine.Unit, int]]]:
    """The cells (unit, seed) of the parts ``cfg.parts``: (those whose rows carry their seed, the whole
    units), each in the order of the parts."""
    parts = set(cfg.parts)
    seeds = range(cfg.seeds)
    seeded: list[tuple[engine.Unit, int]] = []
    whole: list[tuple[engine.Unit, int]] = []
    if "a" in parts:
        seeded += [(unit(cfg, "a"), s) for s in seeds]
    if parts & {"b", "c"}:
        seeded.append((unit(cfg, "rays_models", cfg.data), 0))
        seeded += [(unit(cfg, "rays", cfg.data), s) for s in seeds]
    if "c" in parts:
        mnist = cfg.mnist()
        whole.append((unit(cfg, "magnitude", cfg.data, "data"), 0))
        if mnist is not None:
            whole.append((unit(cfg, "magnitude", mnist, "mnist"), 0))
    if "d" in parts:
        seeded += [(unit(cfg, "d", cfg.data), s) for s in seeds]
    return seeded, whole


def run_unit(u: engine.Unit, seeds) -> list[dict]:
    """The rows of unit ``u`` for the seeds ``seeds`` (a ``magnitude`` unit ignores them: it runs every seed
    of its config)."""
    cfg = u.settings
    if u.part == "a":
        return dimension.run(cfg, seeds)
    ds = load_spec(u.data)
    if u.part == "magnitude":
        return magnitude.point_rows(magnitude.run(cfg, ds, u["tag"]), u["tag"])
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    z, yz = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    if u.part == "rays_models":
        return rays.run_models(cfg, x, y, z, yz)
    if u.part == "rays":
        return rays.run_nets(cfg, x, y, z, yz, seeds)
    if u.part == "d":
        return adversarial.run(cfg, x, y, z, yz, seeds)
    raise ValueError(f"unknown linearity unit {u.part!r}; expected one of {', '.join(READS)}")
