"""ntk_adv: adversarial examples on wide two-layer networks and their neural-tangent-kernel limits.

The public API is imported lazily (PEP 562): ``import ntk_adv`` is cheap and imports neither JAX nor numpy;
the first use of a name imports its module. Example on your own arrays (labels in {-1, +1})::

    import ntk_adv

    data = ntk_adv.DataSpec.from_arrays(x_train, y_train, x_test, y_test)
    net = ntk_adv.TwoLayerConfig(256)                         # an Architecture; width INF_WIDTH: the limit
    cfg = ntk_adv.ProtocolConfig(data=data, arch=net, eps=1.0, steps_f=100, steps_g=100)
    grid = ntk_adv.Grid(cfg, axes={"width": [64, 1024, ntk_adv.INF_WIDTH]}, seeds=3)
    store = ntk_adv.ResultStore("runs/mine/store")
    rows = store.rows(ntk_adv.run_perturbation_sweep(grid, store))     # resumable, content-addressed

``ntk_adv.run_sweep`` is the generic engine (:func:`ntk_adv.engine.run_sweep`); the perturbation-learning
sweep is ``ntk_adv.run_perturbation_sweep``.
"""

from __future__ import annotations

import importlib


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ntk-adv")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


# name -> modules that may define it, first found wins (the engine and the perturbation protocol may live in
# either place while the package is being restructured)
_NAMES: dict[str, tuple[str, ...]] = {
    "DataSpec": ("ntk_adv.data",),
    "Dataset": ("ntk_adv.data",),
    "load_spec": ("ntk_adv.data",),
    "load_dataset": ("ntk_adv.data",),
    "TwoLayerConfig": ("ntk_adv.models",),
    "init_params": ("ntk_adv.models",),
    "make_apply": ("ntk_adv.models",),
    "make_predictor": ("ntk_adv.limits",),
    "KernelPredictor": ("ntk_adv.limits",),
    "INF_WIDTH": ("ntk_adv.arch",),
    "Architecture": ("ntk_adv.arch",),
    "ProtocolConfig": ("ntk_adv.perturbation.protocol",),
    "Grid": ("ntk_adv.engine",),
    "run_sweep": ("ntk_adv.engine",),  # the generic engine
    "run_perturbation_sweep": ("ntk_adv.perturbation.batch",),  # the perturbation-learning sweep
    "ResultStore": ("ntk_adv.store",),
    "to_frame": ("ntk_adv.results",),
    "Claim": ("ntk_adv.verdicts",),
}
_SUBMODULES = (
    "arch",
    "attacks",
    "data",
    "engine",
    "kernels",
    "limits",
    "metrics",
    "models",
    "perturbation",
    "plots",
    "results",
    "store",
    "training",
    "verdicts",
)

__all__ = ["__version__", *_NAMES, *_SUBMODULES]


def __getattr__(name: str):
    if name == "__version__":  # read from the installed metadata on first use (keeps the import cheap)
        globals()["__version__"] = _version()
        return globals()["__version__"]
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    for module_name in _NAMES.get(name, ()):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        if hasattr(module, name):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
