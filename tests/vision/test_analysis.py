import math

import pytest
import torch
from torch import nn

from sparse_transfer.vision.analysis import (
    append_json_line,
    inference_flops,
    mask_iou,
    plot_history,
    prediction_entropies,
    read_json_lines,
    sparsity,
    top1_correct,
    training_flops_per_sample,
    zero_channel_fraction,
)


def test_top1_and_entropy_on_known_logits():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    assert top1_correct(logits, torch.tensor([0, 1, 1])).tolist() == [True, False, True]
    # first row: entropy of softmax([2, 1, 0]); uniform row: ln 3; confident row: ~0
    p = torch.softmax(torch.tensor([2.0, 1.0, 0.0]), 0)
    expected = [-float((p * p.log()).sum()), math.log(3), 0.0]
    assert prediction_entropies(logits).tolist() == pytest.approx(expected, abs=1e-6)


def test_mask_iou_on_known_masks():
    before = {"a": torch.tensor([True, True, False, False]), "b": torch.tensor([True])}
    after = {"a": torch.tensor([True, False, True, False]), "b": torch.tensor([True])}
    assert mask_iou(before, after) == pytest.approx(2 / 4)  # kept in both: a0, b0; in either: a0 a1 a2 b0
    assert mask_iou(before, before) == 1.0


def test_sparsity_and_zero_channels_on_known_weights():
    conv = torch.ones(4, 2, 3, 3)
    conv[1] = 0  # one dead output channel
    conv[2, 0] = 0  # half a channel: not dead
    fc = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    global_sparsity, per_layer = sparsity({"conv": conv, "fc": fc})
    assert per_layer == {"conv": 27 / 72, "fc": 3 / 4}
    assert global_sparsity == 30 / 76
    assert zero_channel_fraction({"conv": conv, "fc": fc}) == 2 / 6


def test_inference_flops_scale_with_layer_density():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 5 * 5, 10))
    with torch.no_grad():
        model[0].weight[:2] = 0  # conv half dense
        model[2].weight.zero_()
        model[2].weight[0, :25] = 1  # 25 of 1000 linear weights
    flops = inference_flops(model, torch.randn(1, 2, 5, 5))
    conv_macs = 4 * 5 * 5 * (2 * 3 * 3)
    assert flops["dense"] == conv_macs + 1000
    assert flops["sparse"] == pytest.approx(conv_macs / 2 + 25)
    assert training_flops_per_sample(10.0, 40.0, masked=True) == 30.0
    assert training_flops_per_sample(10.0, 40.0, masked=False) == 60.0


def test_json_log_round_trip_and_plots(tmp_path):
    for epoch in range(3):
        append_json_line(tmp_path / "log.jsonl", {"epoch": epoch, "val_top1": 0.5 + epoch / 10, "mask_iou": None})
    records = read_json_lines(tmp_path / "log.jsonl")
    assert [r["val_top1"] for r in records] == [0.5, 0.6, 0.7]
    written = plot_history(records, tmp_path)
    assert [p.name for p in written] == ["accuracy.png"]  # nothing to plot for mask_iou yet
    assert written[0].read_bytes()[:4] == b"\x89PNG"
