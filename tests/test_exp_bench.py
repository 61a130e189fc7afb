"""The bench main runs every section on a tiny config and writes bench.json with all stable keys (no timing
assertions: the numbers depend on the machine and its load)."""

import json
import math

import numpy as np
import pytest

from experiments import bench, cli

# One width shared by both sweeps and a paper grid of the width sweep's shape and first cell (2 seeds, the
# sweep's lr, eps = 0): the engine's jit is keyed on the first cell's config, so both sweeps reuse one
# compiled group and one compiled loop cell, and the run is dominated by those two compiles and the
# infinite-width subprocess. The reuse accounting of the reference grids is checked without running them
# (test_reference_grids_and_reuse_bound).
TINY = dict(
    matmul_sizes=(128,),
    repeats=2,
    train_widths=(8,),
    train_n=64,
    d=16,
    steps=5,
    vmap_widths=(8,),
    vmap_seeds=2,
    sweep_n=48,
    sweep_n_test=32,
    sweep_widths=(8,),
    sweep_seeds=2,
    sweep_eps=0.0,
    sweep_lr=0.1,
    paper_widths=(8,),
    paper_lrs=(0.1,),
    paper_eps_count=1,
    paper_seeds=2,
    infinite_n=200,
    infinite_n_test=50,
    infinite_repeats=1,
    sweep_repeats=2,
    panel_seeds=1,
    panel_values=(0.0, 0.01),
    panel_n_train=32,
    panel_n_test=16,
    panel_d=8,
    panel_width=8,
    panel_steps=5,
    kernels_fc_n=8,
    kernels_fc_d=16,
    kernels_cnn_n=2,
    kernels_pool_n=2,
    kernels_mnist_points=50,
    kernels_block=16,
)

KEYS = [
    "matmul_peak_gflops",
    "training.width_8.gflops",
    "training.width_8.peak_fraction",
    "training.peak_fraction",
    "training.vmapped.width_8_seeds_2.gflops",
    "width_sweep.engine_s",
    "width_sweep.loop_s",
    "width_sweep.engine_cold_s",
    "width_sweep.loop_cold_s",
    "paper_sweep.engine_s",
    "paper_sweep.loop_s",
    "paper_sweep.reuse_bound",
    "width_sweep.peak_bound",
    "paper_sweep.peak_bound",
    "paper_sweep.engine_floor_s",
    "width_sweep.loop_same_solver_s",
    "training.width_8.pattern_best_s",
    "training.width_8.pattern_speedup",
    "infinite_agreement.seconds",
    "infinite_agreement.peak_rss_mb",
    "training.width_8.cold_s",
    "training.paper_preset.width_8.gflops",
    "training.paper_preset.width_8.peak_fraction",
    "training.paper_preset.width_8.pattern_best_s",
    "training.paper_preset.width_8.cold_s",
    "matmul.sizes.n_128.cold_s",
    "reproduction_panel.cold_s",
    "reproduction_panel.warm_s",
    "reproduction_panel.points",
    "kernels.fc.ours_s",
    "kernels.cnn_flatten.ours_s",
    "kernels.cnn_pool.ours_s",
    "kernels.cnn_pool.ours_cold_s",
    "kernels.mnist_blockwise.seconds",
    "kernels.mnist_blockwise.peak_rss_mb",
] + [
    f"paper_preset.{sweep}.{k}"
    for sweep in ("width_sweep", "paper_sweep")
    for k in ("engine_s", "loop_s", "speedup", "engine_cold_s", "loop_cold_s", "speedup_cold")
]
SPEEDUPS = [
    "width_sweep.speedup",
    "width_sweep.speedup_cold",
    "paper_sweep.speedup",
    "paper_sweep.speedup_cold",
    "width_sweep.speedup_same_solver",
    "paper_sweep.solver_speedup_per_cell",
]


def get(tree: dict, path: str):
    for part in path.split("."):
        tree = tree[part]
    return tree


@pytest.mark.slow  # default run under ~10 min on 2 cores; CI runs -m slow too
def test_bench_main_tiny(tmp_path, capsys):
    res = bench.main(bench.Config(**TINY), tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["matmul_peak_gflops"] == res["matmul_peak_gflops"]
    for key in KEYS:
        value = get(on_disk, key)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    for key in SPEEDUPS:
        assert math.isfinite(get(on_disk, key)) and get(on_disk, key) > 0, key
    paper = on_disk["paper_sweep"]
    assert paper["cells"] == 2 and paper["trainings"] == {
        "engine_f": 2,
        "engine_g": 2,
        "loop_f": 2,
        "loop_g": 2,
    }
    assert on_disk["width_sweep"]["cells"] == 2 and on_disk["width_sweep"]["rounds"] == 2
    assert on_disk["width_sweep"]["solvers"] == {
        "engine": "auto",
        "loop": "autodiff",
        "loop_same_solver": "auto",
    }
    # The engine and the loop compute the same cells with the same keys.
    for sweep in ("width_sweep", "paper_sweep"):
        assert on_disk[sweep]["max_abs_metric_diff"] < 1e-3
    kernel_cases = ("fc", "cnn_flatten", "cnn_pool")
    with_nt = on_disk["kernels"]["fc"]["neural_tangents"]  # the oracle environment times neural-tangents too
    assert set(on_disk["targets"]) == {
        "training_peak_fraction",
        "width_sweep_speedup",
        "paper_sweep_speedup",
        "paper_preset_width_sweep_speedup",
        "paper_preset_paper_sweep_speedup",
        "infinite_seconds",
    } | ({f"kernels_{c}_ratio" for c in kernel_cases} if with_nt else set())
    for case in kernel_cases:
        entry = on_disk["kernels"][case]
        assert entry["neural_tangents"] is with_nt and (entry["ratio"] is None) is (not with_nt)
        if with_nt:  # the same kernel (float32)
            assert entry["ratio"] > 0 and entry["max_rel_diff"] < 1e-3, (case, entry)
    mnist = on_disk["kernels"]["mnist_blockwise"]
    assert mnist["n"] == 50 and mnist["finite"] and mnist["symmetric"]
    for sweep in ("width_sweep", "paper_sweep"):  # the papers' optimizer in every path, backprop in the loop
        part = on_disk["paper_preset"][sweep]
        assert part["preset"] == "paper" and on_disk[sweep]["preset"] == "theory"
        assert part["solvers"] == {"engine": "auto", "loop": "autodiff"}
        assert part["max_abs_metric_diff"] < 1e-3
    assert on_disk["targets"]["training_peak_fraction"]["met"] is None  # no width >= 1000 in the tiny run
    assert all(
        isinstance(t["met"], bool) for k, t in on_disk["targets"].items() if k != "training_peak_fraction"
    )
    assert {"git_rev", "jax", "jaxlib"} <= set(on_disk) and on_disk["jax"] == __import__("jax").__version__
    assert on_disk["reference_sizes"] is False
    assert "speedup" in capsys.readouterr().out  # the table


def test_quick_and_cli_options():
    quick = bench.Config(quick=True).resolved()
    assert quick.sweep_n < bench.Config().sweep_n and quick.infinite_n < bench.Config().infinite_n
    assert bench.Config(quick=True, steps=7).resolved().steps == 7  # explicit values win over --quick
    cfg = cli.parse_config("bench", ["--quick", "--sections", "matmul", "paper_sweep"])
    assert cfg.quick and cfg.sections == ("matmul", "paper_sweep")
    assert (
        bench.train_flops_per_step(2000, 784, 100)
        == 4 * 2000 * 784 * 100 + 8 * 2000 * 100 + 2 * 784 * 100 + 2 * 100 + 3 * 2000
    )
    assert (
        bench.train_flops_per_step(2000, 784, 100, "paper")
        == bench.train_flops_per_step(2000, 784, 100) + 2 * 784 * 100 + 2 * 100
    )  # the momentum trace
    assert bench.Config().paper_grid("paper").base.preset == "paper"
    assert len(bench.Config().width_grid("paper").cells()) == 45


def test_reference_grids_and_reuse_bound():
    """The default sweeps are the reference ones: 9 widths x 5 seeds, and 3 widths x 2 x 2 lr x 11 eps = 132
    cells whose engine trains f 6 times and g 132 times: reuse alone bounds the speedup by 264 / 138."""
    cfg = bench.Config()
    assert len(cfg.width_grid().cells()) == 45
    cells = cfg.paper_grid().cells()
    assert len(cells) == 132
    assert {c.eps for c, _ in cells} == {float(e) for e in np.linspace(0, 0.14, 11)}
    assert bench._count_trainings(cells) == (6, 132)
    assert abs(bench.reuse_bound(cells) - 264 / 138) < 1e-12
    assert cfg.paper_grid().base.data.n_train == 2000 and cfg.paper_grid().base.data.d == 784
    assert cfg.paper_grid().base.steps_f == cfg.paper_grid().base.steps_g == 100


def test_training_flops_of_the_reference_grids():
    """Training FLOPs counted by hand: the paper sweep's engine trains f once per (width, lr_f) and g per
    cell, the loop both per cell; per training 100 steps of 4Ndm + 8Nm + 2dm + 2m + 3N. The width sweep shares
    nothing."""
    cfg = bench.Config()
    n, d, steps = 2000, 784, 100

    def per_training(m):
        return steps * (4 * n * d * m + 8 * n * m + 2 * d * m + 2 * m + 3 * n)

    paper = bench.training_flops(cfg.paper_grid().cells())
    assert paper["engine"] == sum((2 + 44) * per_training(m) for m in (10, 100, 1000))
    assert paper["loop"] == sum(88 * per_training(m) for m in (10, 100, 1000))
    width = bench.training_flops(cfg.width_grid().cells())
    assert width["engine"] == width["loop"] == sum(10 * per_training(2**k) for k in range(4, 13))
    assert 5.1e13 < width["engine"] < 5.2e13  # 51.4 TFLOP: 202 s at 255 GFLOP/s
