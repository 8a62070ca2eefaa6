"""SparseTransferTrainer on a tiny sparse BERT: exact zeros, unfreezing order, LR, resume."""

import pytest
import torch
from helpers import ToyDataset, tiny_sparse_bert
from safetensors.torch import load_file
from transformers import (
    BertForSequenceClassification,
    TrainerCallback,
    TrainingArguments,
)

from sparse_transfer import SparseTransferTrainer
from sparse_transfer.utils.errors import ConfigurationError

RECIPE = "gradual_unfreeze"


def make_args(out, **overrides):
    values = dict(
        output_dir=str(out), per_device_train_batch_size=16, learning_rate=1e-3, weight_decay=0.01,
        logging_steps=1, report_to="none", use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True,
    )
    values.update(overrides)
    return TrainingArguments(**values)


def zero_positions(model):
    return {n: (p.detach() == 0).clone() for n, p in model.named_parameters() if ".encoder.layer." in n
            and n.endswith(".weight") and "LayerNorm" not in n}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_pruned_weights_stay_exactly_zero_in_memory_and_in_the_saved_checkpoint(tmp_path, bf16):
    model = tiny_sparse_bert()
    zeros = zero_positions(model)
    trainer = SparseTransferTrainer(model, make_args(tmp_path, bf16=bf16), train_dataset=ToyDataset(), recipe=RECIPE)
    trainer.train()
    assert trainer.state.global_step == 4 * 4  # 4 stages (1 + 2 blocks + 1) of 4 steps
    assert trainer.masks.verify() == 0
    trainer.save_model(str(tmp_path / "final"))
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "final")
    for name, was_zero in zeros.items():
        weight = reloaded.get_parameter(name)
        assert torch.count_nonzero(weight[was_zero]) == 0, name
        assert torch.count_nonzero(weight[~was_zero]) == int((~was_zero).sum())  # kept weights trained, non-zero
    report = __import__("json").loads((tmp_path / "final" / "sparsity_report.json").read_text())
    assert report["mask_violations"] == 0
    assert report["global_sparsity"] == 0.5
    assert set(report["blocks"]) == {"0", "1"}
    assert (tmp_path / "final" / "recipe.yaml").exists()
    stored = load_file(tmp_path / "final" / "model.safetensors")
    assert all(torch.count_nonzero(stored[n][zeros[n]]) == 0 for n in zeros)


class Recorder(TrainerCallback):
    """Per epoch: the trainable parameter names (seen at the first step) and a weight snapshot at the end."""

    def __init__(self, model):
        self.model, self.trainable, self.snapshots = model, [], [self.snapshot(model)]

    @staticmethod
    def snapshot(model):
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_step_begin(self, args, state, control, **kwargs):
        if len(self.trainable) == int(state.epoch or 0) and state.global_step % 4 == 0:
            self.trainable.append({n for n, p in self.model.named_parameters() if p.requires_grad})

    def on_epoch_end(self, args, state, control, **kwargs):
        self.snapshots.append(self.snapshot(self.model))


def block_weights(model, block):
    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and n.startswith(f"bert.encoder.layer.{block}.")}


def test_blocks_unfreeze_back_to_front_and_frozen_weights_are_bitwise_unchanged(tmp_path):
    model = tiny_sparse_bert(num_layers=3)
    recorder = Recorder(model)
    trainer = SparseTransferTrainer(model, make_args(tmp_path), train_dataset=ToyDataset(), recipe=RECIPE,
                                    callbacks=[recorder])
    trainer.train()
    weights = {b: {f"{n}.weight" for n in block_weights(model, b)} for b in range(3)}
    embeddings = {n for n in recorder.snapshots[0] if "embeddings" in n and "LayerNorm" not in n}
    always = set(recorder.snapshots[0]) - set().union(*weights.values()) - embeddings
    expected = [always, always | weights[2], always | weights[2] | weights[1], always | set().union(*weights.values()),
                always | set().union(*weights.values())]
    assert recorder.trainable == expected
    first, snaps = recorder.snapshots[0], recorder.snapshots
    for name in embeddings:  # never train
        assert torch.equal(snaps[-1][name], first[name]), name
    for block, unfrozen_at in ((2, 1), (1, 2), (0, 3)):
        for name in weights[block]:
            assert torch.equal(snaps[unfrozen_at][name], first[name]), (name, "moved before its stage")
            assert not torch.equal(snaps[unfrozen_at + 1][name], first[name]), (name, "did not train in its stage")
    stage0_changed = {n for n in always if not torch.equal(snaps[1][n], first[n])}
    assert any(n.endswith(".bias") and ".encoder.layer." in n for n in stage0_changed)
    assert any("LayerNorm" in n for n in stage0_changed)
    assert "classifier.weight" in stage0_changed
    stages = [h for h in trainer.state.log_history if "stage" in h]
    assert [h["stage"] for h in stages] == [0, 1, 2, 3, 4]
    assert [h["trainable_blocks"] for h in stages] == [0, 1, 2, 3, 3]


def test_logged_lr_is_the_rewinding_sawtooth(tmp_path):
    trainer = SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path, learning_rate=2e-3),
                                    train_dataset=ToyDataset(), recipe=RECIPE)
    trainer.train()
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert len(logged) == 16
    # 4 steps per stage: LR of step s is peak * (4 - s % 4) / 4, back to the peak every stage
    assert logged == pytest.approx([2e-3 * (4 - s % 4) / 4 for s in range(16)], abs=1e-12)
    assert logged[0] == logged[4] == logged[8] == logged[12] == 2e-3  # stage starts
    assert logged[2] == pytest.approx(1e-3) and logged[3] == pytest.approx(5e-4)  # mid stage, stage end


def test_gradient_accumulation_counts_optimizer_steps_not_batches(tmp_path):
    args = make_args(tmp_path, per_device_train_batch_size=8, gradient_accumulation_steps=3)
    trainer = SparseTransferTrainer(tiny_sparse_bert(), args, train_dataset=ToyDataset(), recipe=RECIPE)
    trainer.train()
    assert trainer.steps_per_epoch == 3  # 8 batches per epoch -> ceil(8 / 3) optimizer steps
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert logged == pytest.approx([1e-3 * (3 - s % 3) / 3 for s in range(12)])
    assert trainer.masks.verify() == 0


def test_resume_lands_in_the_right_stage_with_the_same_weights(tmp_path):
    recipe = {"schedule": {"final_stage_epochs": 0}}  # 2 blocks -> 3 stages
    straight = SparseTransferTrainer(tiny_sparse_bert(dropout=0.1), make_args(tmp_path / "a"),
                                     train_dataset=ToyDataset(), recipe=recipe)
    straight.train()

    class StopAfterTwoEpochs(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.epoch >= 2

    args = make_args(tmp_path / "b", save_strategy="epoch")
    first = SparseTransferTrainer(tiny_sparse_bert(dropout=0.1), args, train_dataset=ToyDataset(), recipe=recipe,
                                  callbacks=[StopAfterTwoEpochs()])
    first.train()
    assert first.state.global_step == 8
    with pytest.raises(ValueError, match="resume with the same model"):
        SparseTransferTrainer(tiny_sparse_bert(seed=1), make_args(tmp_path / "c"), train_dataset=ToyDataset(),
                              recipe=recipe).train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-8"))
    resumed = SparseTransferTrainer(tiny_sparse_bert(dropout=0.1), make_args(tmp_path / "b"),
                                    train_dataset=ToyDataset(), recipe=recipe)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-8"))
    assert resumed.state.global_step == 12
    assert [h["stage"] for h in resumed.state.log_history if "stage" in h][-1] == 2
    lrs = [h["learning_rate"] for h in resumed.state.log_history if "learning_rate" in h]
    assert lrs[-4:] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert resumed.masks.verify() == 0


def test_dense_transfer_recipe_trains_everything_from_the_first_step_with_mask_held(tmp_path):
    model = tiny_sparse_bert()
    before = Recorder.snapshot(model)
    trainer = SparseTransferTrainer(model, make_args(tmp_path), train_dataset=ToyDataset(), recipe="dense_transfer")
    trainer.train()
    assert trainer.state.global_step == 12  # 3 epochs
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert logged == pytest.approx([1e-3 * (12 - s) / 12 for s in range(12)])  # one decay, no rewind
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, before["bert.embeddings.word_embeddings.weight"])
    assert trainer.masks.verify() == 0


def test_explicit_epochs_override_a_dense_recipe_but_not_a_staged_one(tmp_path):
    trainer = SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path, num_train_epochs=5),
                                    recipe="dense_transfer")
    assert trainer.args.num_train_epochs == 5
    with pytest.raises(ValueError, match="num_train_epochs=5 does not match the 4 epochs"):
        SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path, num_train_epochs=5), recipe=RECIPE)


def test_optimizer_holds_every_parameter_that_will_ever_train(tmp_path):
    model = tiny_sparse_bert()
    trainer = SparseTransferTrainer(model, make_args(tmp_path), recipe=RECIPE)
    optimizer = trainer.create_optimizer()
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in in_optimizer}
    assert names == {n for n, _ in model.named_parameters()} - {
        "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight"}
    no_decay = {n for n, p in model.named_parameters() if id(p) in {id(q) for q in optimizer.param_groups[1]["params"]}}
    assert all(n.endswith("bias") or "LayerNorm" in n for n in no_decay) and no_decay


def test_dense_model_gets_a_warning_with_its_measured_sparsity(tmp_path):
    with pytest.warns(UserWarning, match=r"measured sparsity 0\.00%"):
        SparseTransferTrainer(tiny_sparse_bert(sparsity=0.0), make_args(tmp_path), recipe=RECIPE)


def test_bad_recipe_and_architecture_errors_name_the_problem_and_fix(tmp_path):
    with pytest.raises(ConfigurationError, match=r"unfreezes 12 blocks but the model has 2; set schedule.unfreeze_blocks"):
        SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path), recipe={"schedule": {"unfreeze_blocks": 12}})
    with pytest.raises(ValueError, match=r"cannot find the transformer blocks of Sequential.*block_path"):
        SparseTransferTrainer(torch.nn.Sequential(torch.nn.Linear(2, 2)), make_args(tmp_path), recipe=RECIPE)
    with pytest.raises(ValueError, match=r"block path 'bert.encoder' is not a module list.*set the recipe's "
                                         r"mask.block_path \(run_glue.py: --block_path\).*bert.encoder.layer \(2\)"):
        SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path), recipe={"mask": {"block_path": "bert.encoder"}})
    with pytest.raises(ValueError, match="max_steps=3 cannot be combined"):
        SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path, max_steps=3), recipe=RECIPE)
