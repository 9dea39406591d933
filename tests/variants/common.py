"""Helpers for the variant tests: random variant modules and their block-layout arrays."""

from __future__ import annotations

import numpy as np
import torch

from numpyrnn import NumpyGRU, NumpyLSTM


def randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Fill every parameter with random values (peepholes included), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return module


def blocks(module) -> dict:
    """The module's weights as block-layout arrays, plus ``peepholes`` ``(L, D, 3, H)``.

    The torch-named parameters go through a ``NumpyGRU``/``NumpyLSTM`` of the same
    configuration and its ``to_numpy``; peepholes are read by name.
    """
    kw = dict(num_layers=module.num_layers, bias=module.bias, bidirectional=module.bidirectional,
              dtype=torch.float64)
    if module.mode == "GRU":
        twin: torch.nn.Module = NumpyGRU(module.input_size, module.hidden_size, **kw)
    else:
        twin = NumpyLSTM(module.input_size, module.hidden_size, proj_size=module.proj_size, **kw)
    sd = module.state_dict()
    twin.load_state_dict({k: v.double() for k, v in sd.items() if not k.startswith(("weight_ci", "weight_cf", "weight_co"))})
    arrays = twin.to_numpy()  # type: ignore[operator]
    if getattr(module, "peepholes", False):
        D = 2 if module.bidirectional else 1
        arrays["peepholes"] = np.stack([
            np.stack([np.stack([sd[f"weight_c{g}_l{k}" + ("_reverse" if d else "")].double().numpy()
                                for g in "ifo"]) for d in range(D)])
            for k in range(module.num_layers)
        ])
    return arrays
