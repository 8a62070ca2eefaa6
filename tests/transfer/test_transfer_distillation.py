"""Distillation during transfer: a frozen dense teacher's logits mixed with the task loss."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from helpers import GLUE_DIR, ToyDataset, tiny_sparse_bert
from test_trainer import make_args
from transformers import TrainerCallback

from sparse_transfer import SparseTransferTrainer
from sparse_transfer.transfer import run as transfer_run
from sparse_transfer.transfer.recipe import RecipeError, load_recipe
from sparse_transfer.utils.errors import ConfigurationError


def batch(n=8):
    data = ToyDataset(n=n)
    return {key: torch.stack([data[i][key] for i in range(n)]) for key in ("input_ids", "attention_mask", "labels")}


def training_loss(trainer, inputs, train=True):
    trainer.model.train(train)
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, dict(inputs))


def trainer_for(tmp_path, student, teacher=None, recipe=None):
    return SparseTransferTrainer(student, make_args(tmp_path), train_dataset=ToyDataset(), recipe=recipe,
                                 teacher=teacher)


def test_hardness_0_is_the_task_loss_and_the_kl_is_zero_for_a_student_equal_to_its_teacher(tmp_path):
    inputs = batch()
    plain = training_loss(trainer_for(tmp_path / "a", tiny_sparse_bert()), inputs)
    teacher = tiny_sparse_bert(seed=1, sparsity=0.0)
    at_0 = training_loss(trainer_for(tmp_path / "b", tiny_sparse_bert(), teacher, {"distillation": {"hardness": 0.0}}),
                         inputs)
    assert at_0.item() == plain.item() and plain.item() > 0.5  # exactly the task loss

    student = tiny_sparse_bert()
    itself = training_loss(trainer_for(tmp_path / "c", student, copy.deepcopy(student)), inputs)
    assert itself.item() == pytest.approx(0.0, abs=1e-6)


def test_hardness_mixes_kl_at_temperature_with_the_task_loss(tmp_path):
    inputs = batch()
    student, teacher = tiny_sparse_bert(), tiny_sparse_bert(seed=1, sparsity=0.0)
    trainer = trainer_for(tmp_path, student, teacher, {"distillation": {"hardness": 0.25, "temperature": 2.0}})
    with torch.no_grad():
        features = {k: v for k, v in inputs.items() if k != "labels"}
        s, t = student(**features).logits, teacher.eval()(**features).logits
    kl = F.kl_div(F.log_softmax(s / 2, -1), F.log_softmax(t / 2, -1), log_target=True, reduction="batchmean") * 4
    task = F.cross_entropy(s, inputs["labels"])
    assert training_loss(trainer, inputs).item() == pytest.approx((0.75 * task + 0.25 * kl).item(), rel=1e-6)
    assert training_loss(trainer, inputs, train=False).item() == pytest.approx(task.item(), rel=1e-6)  # eval: task only
    assert not any(p.requires_grad for p in trainer.teacher.parameters()) and not trainer.teacher.training


def test_regression_head_distills_with_mse(tmp_path):
    inputs = {**batch(), "labels": torch.linspace(0, 5, 8)}
    student, teacher = tiny_sparse_bert(num_labels=1), tiny_sparse_bert(seed=1, num_labels=1)
    trainer = trainer_for(tmp_path, student, teacher, {"distillation": {"hardness": 1.0}})
    with torch.no_grad():
        features = {k: v for k, v in inputs.items() if k != "labels"}
        expected = F.mse_loss(student(**features).logits, teacher(**features).logits)
    assert training_loss(trainer, inputs).item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_resumed_distilled_run_equals_an_uninterrupted_one(tmp_path):
    recipe = {"schedule": {"final_stage_epochs": 0}, "distillation": {"hardness": 0.5}}
    teacher = tiny_sparse_bert(seed=1, sparsity=0.0)
    straight = SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path / "a"), train_dataset=ToyDataset(),
                                     recipe=recipe, teacher=teacher)
    straight.train()

    class StopAfterTwoEpochs(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.epoch >= 2

    SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path / "b", save_strategy="epoch"),
                          train_dataset=ToyDataset(), recipe=recipe, teacher=teacher,
                          callbacks=[StopAfterTwoEpochs()]).train()
    resumed = SparseTransferTrainer(tiny_sparse_bert(), make_args(tmp_path / "b"), train_dataset=ToyDataset(),
                                    recipe=recipe, teacher=teacher)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-8"))
    assert resumed.state.global_step == 12
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert resumed.masks.verify() == 0


def test_bad_distillation_settings_are_one_line(tmp_path):
    with pytest.raises(RecipeError, match=r"distillation.hardness 1.5 in <dict> must be in \[0, 1\]"):
        load_recipe({"distillation": {"hardness": 1.5}})
    with pytest.raises(ConfigurationError, match="recipe 'gradual_unfreeze_distill' distills from a teacher: set "
                                                 "distillation.teacher, or pass --teacher DIR"):
        trainer_for(tmp_path, tiny_sparse_bert(), recipe="gradual_unfreeze_distill")
    with pytest.raises(ConfigurationError, match="has 3 outputs but the student has 2; give a teacher fine-tuned on "
                                                 "the same task"):
        trainer_for(tmp_path, tiny_sparse_bert(), tiny_sparse_bert(num_labels=3))


@pytest.mark.skipif(not GLUE_DIR.exists(), reason=f"{GLUE_DIR} missing")
def test_run_glue_teacher_flag_with_the_distillation_recipe(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    teacher_dir = tmp_path / "teacher"
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).save_pretrained(teacher_dir)
    out = tmp_path / "rte"
    status = transfer_run.main(["--task", "rte", "--model_name_or_path", str(tiny_model_dir), "--data_dir", str(GLUE_DIR),
                            "--recipe", "gradual_unfreeze_distill", "--teacher", str(teacher_dir),
                            "--max_train_samples", "16", "--max_eval_samples", "8", "--output_dir", str(out),
                            "--disable_tqdm", "true"])
    assert status == 0
    saved = (out / "recipe.yaml").read_text()
    assert f"teacher: {teacher_dir}" in saved and "hardness: 1.0" in saved and "temperature: 5.5" in saved
    results = json.loads((out / "eval_results.json").read_text())
    assert results["recipe"] == "gradual_unfreeze_distill" and results["mask_violations"] == 0
