"""2-D views of conv kernels: shared storage, mirrored gradients, clipping, layouts, and a loud failure when moved."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from visdet.engine.optim.hybrid.matrix_views import has_matrix_view, matrix_view


def test_matrix_view_shares_storage_and_updates_the_parameter_in_place():
    conv = nn.Conv2d(3, 4, 3)
    view = matrix_view(conv.weight)
    assert view.shape == (4, 27) and view.is_leaf and view.requires_grad
    assert view.data_ptr() == conv.weight.data_ptr()
    before = conv.weight.detach().clone()
    opt = torch.optim.SGD([view], lr=0.5)
    conv(torch.randn(2, 3, 5, 5)).square().sum().backward()
    opt.step()
    assert torch.allclose(conv.weight.detach(), before - 0.5 * conv.weight.grad)
    with pytest.raises(ValueError, match="more than 2 dims"):
        matrix_view(nn.Linear(2, 2).weight)


def test_matrix_view_grad_mirrors_and_accumulates():
    conv = nn.Conv2d(3, 4, 3)
    view = matrix_view(conv.weight)
    x1, x2 = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    g1 = torch.autograd.grad(conv(x1).square().sum(), conv.weight)[0]
    g2 = torch.autograd.grad(conv(x2).square().sum(), conv.weight)[0]
    conv(x1).square().sum().backward()
    assert torch.equal(view.grad, g1.reshape(4, -1))
    assert view.grad.data_ptr() == conv.weight.grad.data_ptr()  # a view of the real gradient
    conv(x2).square().sum().backward()
    assert torch.allclose(view.grad, (g1 + g2).reshape(4, -1))


def test_clipping_the_view_clips_the_parameter_gradient():
    conv = nn.Conv2d(3, 4, 3)
    view = matrix_view(conv.weight)
    conv(torch.randn(2, 3, 5, 5)).square().sum().backward()
    assert conv.weight.grad.norm() > 1.0
    torch.nn.utils.clip_grad_norm_([view], max_norm=0.1)
    assert torch.allclose(conv.weight.grad.norm(), torch.tensor(0.1), atol=1e-5)


def test_matrix_view_of_a_channels_last_kernel_pairs_values_with_their_gradients():
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    view = matrix_view(conv.weight)
    assert view.data_ptr() == conv.weight.data_ptr()
    conv(torch.randn(2, 3, 5, 5).to(memory_format=torch.channels_last)).square().sum().backward()
    assert torch.allclose((view * view.grad).sum(), (conv.weight * conv.weight.grad).sum())
    assert torch.equal(view.detach().sort(dim=1).values, conv.weight.detach().reshape(4, -1).sort(dim=1).values)


def test_a_parameter_moved_after_building_the_view_fails_loudly():
    conv = nn.Conv2d(3, 4, 3)
    _view = matrix_view(conv.weight)
    conv.weight.data = conv.weight.data.clone()  # what model.to(...) does after the optimizer is built
    with pytest.raises(RuntimeError, match="build the optimizer after moving the model"):
        conv(torch.randn(1, 3, 5, 5)).sum().backward()


def test_has_matrix_view_tells_which_layouts_can_be_viewed():
    kernel = nn.Conv2d(3, 4, 3).weight
    assert has_matrix_view(kernel) and has_matrix_view(kernel.detach().to(memory_format=torch.channels_last))
    assert not has_matrix_view(torch.randn(3, 3, 4, 5).transpose(0, 2))  # dim 0 not outermost: no 2-D view
