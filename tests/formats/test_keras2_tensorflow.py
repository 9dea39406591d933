"""Keras 2 files written now by the installed tf_keras, read with numpyrnn (tf_keras runs in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from numpyrnn import NumpyGRU
from numpyrnn.formats import keras2

pytest.importorskip("tensorflow", reason="tensorflow is not installed: pip install numpyrnn[tf-era]")
pytest.importorskip("tf_keras", reason="tf_keras is not installed: pip install numpyrnn[tf-era]")

from .test_keras2 import layer_of  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "data" / "make_keras2_files.py"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras2")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, env=env, capture_output=True, timeout=600)
    return out


@pytest.mark.parametrize("case", ["cudnnlstm", "cudnngru", "bi_cudnnlstm", "bi_cudnngru", "gru_reset_after"])
def test_fresh_files_match_tf_keras(written, case):
    class_name, config, arrays, _ = layer_of(written / f"{case}.h5")
    keras2.check_config(class_name, config)
    module = keras2.build_cudnn(class_name, arrays) if class_name in keras2.CUDNN_LAYERS else NumpyGRU.from_keras(arrays)
    data = np.load(written / f"{case}.npz")
    with torch.no_grad():
        y = module(torch.from_numpy(data["x"]))[0].numpy()
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["cudnnlstm", "cudnngru", "bi_cudnnlstm", "bi_cudnngru", "gru_reset_after",
                                  "lstm_hard_sigmoid", "bi_sum_gru_keras2_defaults"])
def test_fresh_files_through_load_all(written, case, tmp_path):
    """The files tf_keras writes now, through numpyrnn.load_all (variants for Keras 2's old defaults) and back."""
    import warnings

    import numpyrnn
    from numpyrnn import LayoutError
    from numpyrnn.cli import main
    from numpyrnn.variants import VariantWarning

    old_defaults = case in ("lstm_hard_sigmoid", "bi_sum_gru_keras2_defaults")
    if old_defaults:
        with pytest.raises(LayoutError, match=r"variants=True builds"):
            numpyrnn.load_all(written / f"{case}.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (module,) = numpyrnn.load_all(written / f"{case}.h5", variants=old_defaults).values()
    assert any(issubclass(w.category, VariantWarning) for w in caught) == old_defaults
    data = np.load(written / f"{case}.npz")
    with torch.no_grad():
        y = module(torch.from_numpy(data["x"]))[0].numpy()
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5)
    flags = ["--variants"] if old_defaults else []
    assert main(["convert", str(written / f"{case}.h5"), "-o", str(tmp_path / "out.pt"), *flags]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        back = numpyrnn.load(tmp_path / "out.pt")
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.from_numpy(data["x"]))[0].numpy(), y)
