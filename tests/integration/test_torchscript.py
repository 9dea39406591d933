"""torch.jit.script of models that hold numpyrnn modules (or subclasses of them)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from numpyrnn import NumpyGRU

from ..conftest import assert_state_equal, state
from .common import CLASSES, build, class_id, inputs, torch_twin

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class Model(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out)


class UserGRU(NumpyGRU):
    """A user's subclass: extra constant and method, no forward of its own."""

    scale: float = 2.0

    def doubled_size(self) -> int:
        return 2 * self.hidden_size


# torch.jit.script sets ``__overloads__`` on every module it scripts, ``nn.GRU`` included.
TORCH_ADDS = {"__overloads__"}


def _python_state(module: nn.Module) -> dict[str, tuple]:
    return {name: (type(m), {k for k in vars(m) if k not in TORCH_ADDS}, m.training)
            for name, m in module.named_modules()}


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_scripted_model_matches_eager_and_leaves_model_alone(cls):
    model = Model(build(cls)).eval()
    x = inputs()
    before, weights = _python_state(model), state(model)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)
    assert type(model.rnn) is cls
    assert _python_state(model) == before
    assert_state_equal(state(model), weights)


def test_user_subclass_of_numpyrnn_scripts():
    rnn = UserGRU(3, 4, batch_first=True)
    model = Model(rnn).eval()
    scripted = torch.jit.script(model)
    x = inputs()
    torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)
    assert type(model.rnn) is UserGRU


def test_scripted_model_with_hidden_state_and_training():
    """The Tensor overload with an explicit ``hx``, and gradients through the scripted module."""

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = build(NumpyGRU, layers=2, bidirectional=True)

        def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            out, h_n = self.rnn(x, h)
            return out.sum() + h_n.sum()

    model = WithState()
    x, h = inputs(), torch.randn(4, 2, 4)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x, h), model(x, h), rtol=1e-6, atol=1e-6)
    eager_grads = torch.autograd.grad(model(x, h), list(model.parameters()))
    scripted_grads = torch.autograd.grad(scripted(x, h), list(scripted.parameters()))
    assert len(eager_grads) == len(scripted_grads) == 16
    for a, b in zip(eager_grads, scripted_grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_plain_torch_subclass_is_unchanged():
    """Only numpyrnn classes get the overload look-up; torch's own behaviour is left as it is."""

    class Sub(nn.GRU):
        pass

    with pytest.raises(RuntimeError, match="Unsupported value kind: Tensor"):
        torch.jit.script(Model(Sub(3, 4, batch_first=True)))


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_scripting_the_module_alone_behaves_like_torch(cls):
    """Scripted on its own, torch's recurrent modules compile the two overloads but have no
    ``forward`` to call (pytorch/pytorch#32976); numpyrnn's do exactly the same."""
    parent = torch_twin(build(cls))
    for module in (build(cls), parent):
        scripted = torch.jit.script(module)
        assert hasattr(scripted, "forward__0") and hasattr(scripted, "forward__1")
        with pytest.raises(AttributeError, match="has no attribute 'forward'"):
            scripted(inputs())


def test_forward_override_calling_super_fails_like_torch():
    """A subclass whose forward calls ``super().forward()`` does not script, for ``nn.GRU``
    (pytorch/pytorch#42885) and for numpyrnn alike: TorchScript cannot call the parent's
    overloaded forward."""

    class TorchSub(nn.GRU):
        def forward(self, x: torch.Tensor):
            return super().forward(x)

    class OurSub(NumpyGRU):
        def forward(self, x: torch.Tensor):
            return super().forward(x)

    for cls in (TorchSub, OurSub):
        with pytest.raises(RuntimeError, match="'Tensor' object has no attribute or method 'forward'"):
            torch.jit.script(Model(cls(3, 4, batch_first=True)))
