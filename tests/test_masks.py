import torch
from torch import nn

from sparse_transfer.masks import MaskedWeights
from sparse_transfer.pruning import magnitude_masks


def _sparse_mlp(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    masks = magnitude_masks({n: p for n, p in model.named_parameters() if n.endswith("weight")}, 0.75)
    with torch.no_grad():
        for name, mask in masks.items():
            model.get_parameter(name).mul_(mask)
    return model


def test_from_nonzero_takes_the_zero_pattern_of_loaded_weights():
    model = _sparse_mlp()
    masked = MaskedWeights.from_nonzero(model)
    assert list(masked.masks) == ["0.weight", "2.weight"]
    assert sum(int((~m).sum()) for m in masked.masks.values()) == 144  # 0.75 * (128 + 64)
    assert masked.mask_sparsity() == 0.75
    assert masked.verify() == 0


def test_enforcement_keeps_exact_zeros_under_adamw_with_weight_decay():
    model = _sparse_mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    masked = MaskedWeights.from_nonzero(model).attach(optimizer)
    for _ in range(20):
        loss = model(torch.randn(32, 8)).pow(2).mean()
        loss.backward()
        for name, mask in masked.masks.items():
            assert torch.count_nonzero(model.get_parameter(name).grad[~mask]) == 0
        optimizer.step()
        optimizer.zero_grad()
    assert masked.verify() == 0
    for name, mask in masked.masks.items():
        state = optimizer.state[model.get_parameter(name)]
        assert torch.count_nonzero(state["exp_avg"][~mask]) == 0
        assert torch.count_nonzero(state["exp_avg_sq"][~mask]) == 0


def test_forward_pre_hook_rezeroes_a_weight_written_behind_our_back():
    model = _sparse_mlp()
    masked = MaskedWeights.from_nonzero(model).attach()
    pruned_in_first = int((~masked.masks["0.weight"]).sum())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    assert masked.verify() == pruned_in_first > 0
    model(torch.randn(2, 8))
    assert masked.verify() == 0


def test_detach_removes_every_hook():
    model = _sparse_mlp()
    masked = MaskedWeights.from_nonzero(model).attach()
    masked.detach()
    assert not model[0]._forward_pre_hooks and not model[2]._forward_pre_hooks
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    model(torch.randn(2, 8))
    assert masked.verify() == int((~masked.masks["0.weight"]).sum()) > 0


def test_a_step_skipped_by_the_gradient_scaler_leaves_weights_exactly_masked():
    model = _sparse_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masked = MaskedWeights.from_nonzero(model).attach(optimizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = model(torch.full((4, 8), float("inf"))).sum()  # inf gradients: the scaler skips the step
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == 2.0**15  # the step was skipped
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert masked.verify() == 0


def test_hooks_keep_working_after_model_to():
    model = _sparse_mlp()
    masked = MaskedWeights.from_nonzero(model).attach()
    model.to(torch.float64)  # a move that replaces tensors but keeps the Parameter objects
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(2, 8, dtype=torch.float64))
    assert masked.verify() == 0
    assert masked.masks["0.weight"].dtype == torch.bool


def test_two_forwards_before_one_backward_keep_weights_masked_and_gradients_valid():
    # the forward pre-hook re-zeroes without bumping the weights' autograd version, so a
    # second forward (R-Drop, two views of a batch) does not invalidate what the first saved
    model = _sparse_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masked = MaskedWeights.from_nonzero(model).attach(optimizer)
    x = torch.randn(4, 8)
    (model(x).sum() + model(x).pow(2).sum()).backward()
    for name, mask in masked.masks.items():
        grad = model.get_parameter(name).grad
        assert torch.count_nonzero(grad[~mask]) == 0 and torch.count_nonzero(grad[mask]) > 0
    optimizer.step()
    assert masked.verify() == 0


def test_one_forward_pre_hook_on_the_model_and_one_gradient_hook_per_weight():
    model = _sparse_mlp()
    masked = MaskedWeights.from_nonzero(model).attach()
    assert len(model._forward_pre_hooks) == 1
    assert not any(m._forward_pre_hooks for m in model.children())
    assert all(len(model.get_parameter(name)._post_accumulate_grad_hooks) == 1 for name in masked.masks)


def test_no_masked_weights_is_a_no_op():
    model = _sparse_mlp()
    masked = MaskedWeights(model, {}).attach()
    model(torch.randn(2, 8))
    assert masked.verify() == 0 and masked.mask_sparsity() == 0.0
