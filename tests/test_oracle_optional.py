"""neural-tangents is an optional extra: without it the bridge fails with one clear line, and the core
works."""

import sys

import pytest

from ntk_adv import kernels


def test_missing_oracle_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "neural_tangents", None)  # as if not installed
    with pytest.raises(kernels.OracleMissing, match=r"pip install 'ntk-adv\[oracle\]'") as err:
        kernels.stax_two_layer(0.0, True)
    assert "\n" not in str(err.value) and isinstance(err.value, ImportError)


def test_oracle_tests_skip_without_it():
    """With neural-tangents blocked, an oracle test is skipped (tests/conftest.py), naming the extra."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys; sys.modules['neural_tangents'] = None; import pytest; "
        "sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', 'tests/test_limits.py::"
        "test_mse_predictor_equals_neural_tangents_gradient_descent_mse']))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "skipped" in done.stdout and "ntk-adv[oracle]" in done.stdout
