"""``numpyrnn.verify`` on ``.pdparams`` with paddle's own ``nn.LSTM``/``GRU``/``SimpleRNN`` as the oracle.

Runs where paddlepaddle is installed (the TF-era environment), in a pytest process
without TensorFlow: paddle cannot be imported after it. The files are the committed
ones paddle wrote; verify reads them without paddle and then runs paddle's layer of
the same configuration holding each file's arrays.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

if sys.modules.get("tensorflow") is not None:
    # paddlepaddle 3.3 crashes (SIGSEGV) when it is imported after TensorFlow 2.21 in one process
    pytest.skip("paddle cannot be imported after tensorflow in one process; run this file in a pytest of its own",
                allow_module_level=True)
paddle = pytest.importorskip("paddle", reason="paddlepaddle is not installed: pip install numpyrnn[tf-era]")

import numpyrnn  # noqa: E402
from numpyrnn import verify  # noqa: E402

from ..formats.paddle_cases import CASES, DATA  # noqa: E402

KINDS = {"NumpyLSTM": "LSTM", "NumpyGRU": "GRU", "NumpyRNN": "SimpleRNN"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pdparams_against_paddle(case):
    name, options, cls, _, _, _ = CASES[case]
    path = DATA / f"{case}.pdparams"
    report = verify(path, **options)
    assert report.ok, str(report)
    assert list(report.modules) == [name]
    assert report.oracle == f"paddle {paddle.__version__} (paddle.nn.{KINDS[cls]})"
    module = numpyrnn.load(path, **options)
    bad = copy.deepcopy(module)
    with torch.no_grad():
        [p for n, p in bad.named_parameters() if n.startswith("weight_ih")][-1].view(-1)[0] += 1e-2
    caught = verify(path, bad, **options)
    assert not caught.ok and caught.oracle == report.oracle, str(caught)


def test_paddle_oracle_reproduces_the_saved_outputs():
    """paddle's layer over the file's arrays computes what paddle saved with it (projection, both directions)."""
    from numpyrnn.verify import _path_cases

    data = np.load(DATA / "lstm_proj_bidirect.npz")
    (case,) = _path_cases(DATA / "lstm_proj_bidirect.pdparams", None, {"_reference": False})[1]
    assert case.oracle.startswith("paddle ")
    x = data["x"]  # batch-major, Paddle's default
    rows, N = 4, x.shape[0]
    out = case.run(x.astype(np.float32), np.zeros((rows, N, 2)), np.zeros((rows, N, 4)))
    np.testing.assert_allclose(out["y"], data["y"], rtol=1e-5, atol=1e-5)
