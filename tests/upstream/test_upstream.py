"""Upstream pruning on tiny models: exact counts, monotone masks, LR rewinding, oBS,
resume, outputs and every bad input; one end-to-end run on the real MiniLM."""

import copy
import json
from pathlib import Path

import pytest
import torch
from helpers import ROOT, load_benchmark, minilm_dir, save_tiny_dense_bert
from transformers import (
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainerCallback,
    TrainingArguments,
)

from sparse_transfer.encoders import load_pretrained
from sparse_transfer.pruning import magnitude_masks
from sparse_transfer.upstream import UpstreamPruningTrainer, load_upstream_recipe
from sparse_transfer.upstream.data import read_documents, tokenized_corpus
from sparse_transfer.upstream.run import main
from sparse_transfer.utils.errors import ConfigurationError

PEAK_LR = 1e-3


def _recipe(**pruning):
    return {"pruning": {"sparsity": 0.75, "every": 3, "end": 0.75, **pruning},
            "distillation": {"hidden": 1.0, "attention": 1.0, "embedding": 1.0}}


def _trainer(model_dir, corpus, output_dir, recipe, max_steps=12, **args):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_pretrained(str(model_dir), attn_implementation="eager")
    data = tokenized_corpus(tokenizer, read_documents(str(corpus)), 32, 0.5, 0.5)
    args = TrainingArguments(output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4,
                             learning_rate=PEAK_LR, report_to="none", logging_steps=1, seed=0, use_cpu=True,
                             disable_tqdm=True, **{"save_strategy": "no", **args})
    return UpstreamPruningTrainer(model, args, teacher=copy.deepcopy(model), recipe=recipe, train_dataset=data,
                                  data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)


class _Recorder(TrainerCallback):
    """Masks and LR as each optimizer step begins (after a due pruning step)."""

    def __init__(self, trainer):
        self.trainer, self.masks, self.lrs = trainer, [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self.masks.append({n: m.clone() for n, m in self.trainer.masks.masks.items()})
        self.lrs.append(self.trainer.lr_scheduler.get_last_lr()[0])


def _pruned(masks):
    return sum(int((~m).sum()) for m in masks.values())


def test_exact_counts_monotone_masks_and_lr_rewinding(tiny_dense_dir, small_corpus, tmp_path):
    trainer = _trainer(tiny_dense_dir, small_corpus, tmp_path / "out", _recipe())
    recorder = _Recorder(trainer)
    trainer.add_callback(recorder)
    trainer.train()
    n = sum(m.numel() for m in trainer.masks.masks.values())
    assert trainer.pruning_steps.targets == pytest.approx(
        {0: 0.0, 3: 0.75 * (1 - (2 / 3) ** 3), 6: 0.75 * (1 - (1 / 3) ** 3), 9: 0.75})
    expected, current = [], 0
    for step in range(12):
        current = trainer.pruning_steps.targets.get(step, current)
        expected.append(round(current * n))
    assert [_pruned(m) for m in recorder.masks] == expected
    for before, after in zip(recorder.masks, recorder.masks[1:]):
        assert all(bool((after[name] <= before[name]).all()) for name in before)  # a pruned weight stays pruned
    # the LR rewinds to the peak at every pruning step, then decays over the fixed-mask phase
    assert recorder.lrs == pytest.approx([PEAK_LR * f for f in [1, 2 / 3, 1 / 3] * 4])
    assert trainer.masks.verify() == 0
    assert trainer.sparsity_report()["global_sparsity"] == round(0.75 * n) / n


def test_per_layer_scope_prunes_every_layer_exactly(tiny_dense_dir, small_corpus, tmp_path):
    trainer = _trainer(tiny_dense_dir, small_corpus, tmp_path / "out", _recipe(scope="per-layer"), max_steps=6)
    trainer.train()
    for name, mask in trainer.masks.masks.items():
        assert int((~mask).sum()) == round(0.75 * mask.numel()), name


def test_a_cap_at_the_target_holds_every_layer_to_it(tiny_dense_dir, small_corpus, tmp_path):
    # the cap equal to the target leaves no room above it: the global prune becomes uniform
    trainer = _trainer(tiny_dense_dir, small_corpus, tmp_path / "out", _recipe(max_layer_sparsity=0.75), max_steps=6)
    trainer.train()
    assert {name: int((~mask).sum()) for name, mask in trainer.masks.masks.items()} == {
        name: int(0.75 * mask.numel()) for name, mask in trainer.masks.masks.items()}
    with pytest.raises(ConfigurationError, match=r"pruning.max_layer_sparsity must be in \[pruning.sparsity, 1\)"):
        load_upstream_recipe(_recipe(max_layer_sparsity=0.5))


def test_block_pruning_prunes_whole_1x4_blocks_exactly_and_never_revives_one(tiny_dense_dir, small_corpus, tmp_path):
    trainer = _trainer(tiny_dense_dir, small_corpus, tmp_path / "out", _recipe(block="1x4"))
    recorder = _Recorder(trainer)
    trainer.add_callback(recorder)
    trainer.train()
    blocks = sum(m.numel() // 4 for m in trainer.masks.masks.values())
    expected, current = [], 0
    for step in range(12):
        current = trainer.pruning_steps.targets.get(step, current)
        expected.append(4 * round(current * blocks))  # whole blocks: round(s * blocks) of them
    assert [_pruned(m) for m in recorder.masks] == expected
    for masks in recorder.masks:
        for mask in masks.values():
            groups = mask.reshape(-1, 4)
            assert bool((groups.all(1) | ~groups.any(1)).all())  # every block kept or pruned whole
    for before, after in zip(recorder.masks, recorder.masks[1:]):
        assert all(bool((after[name] <= before[name]).all()) for name in before)
    assert trainer.masks.verify() == 0


def test_block_pruning_is_refused_where_it_cannot_run(tiny_dense_dir, small_corpus, tmp_path):
    from sparse_transfer.utils.typed_config import RecipeError

    with pytest.raises(RecipeError, match=r"pruning.block 1x4 needs criterion magnitude \(block oBS is not "):
        load_upstream_recipe(_recipe(block="1x4", criterion="obs"))
    with pytest.raises(RecipeError, match=r"pruning.block: block pattern '4x4' is not 1xN"):
        load_upstream_recipe(_recipe(block="4x4"))
    with pytest.raises(ConfigurationError, match=r"input channels of .* are not divisible by the block of 3"):
        _trainer(tiny_dense_dir, small_corpus, tmp_path / "out", _recipe(block="1x3"))


def test_obs_prunes_exactly_and_moves_the_remaining_weights(tiny_dense_dir, small_corpus, tmp_path):
    recipe = _recipe(criterion="obs", obs={"block_size": 8, "num_grads": 4, "grad_batch_size": 2, "damping": 1e-4})
    trainer = _trainer(tiny_dense_dir, small_corpus, tmp_path / "out", recipe, max_steps=1)
    trainer.create_optimizer_and_scheduler(1)
    before = {name: w.detach().clone() for name, w in trainer.masks.weights().items()}
    trainer.prune_to(0.5)
    n = sum(w.numel() for w in before.values())
    assert _pruned(trainer.masks.masks) == round(0.5 * n)
    assert trainer.masks.verify() == 0
    moved = sum(int(((w != before[name]) & trainer.masks.masks[name]).sum()) for name, w in trainer.masks.weights().items())
    assert moved > 0  # the oBS update compensates with the kept weights
    by_magnitude = magnitude_masks(before, 0.5)
    assert any(not torch.equal(by_magnitude[name], trainer.masks.masks[name]) for name in before)  # saliency differs


def test_obs_needs_a_loss_with_a_gradient(tiny_dense_dir, small_corpus, tmp_path):
    recipe = _recipe(criterion="obs", obs={"mask_probability": 0.0})
    recipe["distillation"]["student_mask_probability"] = 0.15  # training masks, but the Fisher would not
    with pytest.raises(ConfigurationError, match="gradient is not zero"):
        _trainer(tiny_dense_dir, small_corpus, tmp_path / "out", recipe)


@pytest.mark.parametrize("criterion", ["magnitude", "obs"])
def test_resumed_run_ends_like_an_uninterrupted_one(tiny_dense_dir, small_corpus, tmp_path, criterion):
    recipe = _recipe(criterion=criterion, obs={"block_size": 8, "num_grads": 4, "grad_batch_size": 2})
    whole = _trainer(tiny_dense_dir, small_corpus, tmp_path / "whole", recipe, save_strategy="steps", save_steps=3)
    whole.train()
    # resume from a checkpoint taken right at a pruning step (6) and between steps (4 is not saved; 3 is)
    for checkpoint in ("checkpoint-6", "checkpoint-3"):
        resumed = _trainer(tiny_dense_dir, small_corpus, tmp_path / f"resumed-{checkpoint}", recipe)
        resumed.train(resume_from_checkpoint=str(tmp_path / "whole" / checkpoint))
        assert resumed.masks.mask_hash() == whole.masks.mask_hash()
        for name, w in whole.masks.weights().items():
            assert torch.allclose(resumed.masks.weights()[name], w, atol=1e-6), name


def test_a_student_equal_to_its_teacher_has_zero_loss_in_training_mode(tmp_path, small_corpus):
    model_dir = save_tiny_dense_bert(tmp_path / "dropout", dropout=0.1)  # the recipe's student_dropout 0 wins
    trainer = _trainer(model_dir, small_corpus, tmp_path / "out", _recipe(), max_steps=1)
    trainer.model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    terms = trainer.loss_terms(trainer.model, batch)
    assert set(terms) == {"hidden", "attention", "embedding"}
    assert all(value.item() == pytest.approx(0.0, abs=1e-6) for value in terms.values()), terms
    assert trainer.loss_terms(trainer.model, batch, mask_probability=0.3)["hidden"].item() > 0  # masked student
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(model_dir).hidden_dropout_prob == 0.1 == trainer.model.config.hidden_dropout_prob


def test_mlm_head_distils_logits_mixed_with_its_own_loss(tmp_path, small_corpus):
    model_dir = save_tiny_dense_bert(tmp_path / "mlm", masked_lm=True)
    recipe = {"pruning": {"sparsity": 0.5, "every": 2},
              "distillation": {"logits": 1.0, "hardness": 0.5, "hidden": 0.0, "embedding": 0.0,
                               "student_mask_probability": 0.15}}
    trainer = _trainer(model_dir, small_corpus, tmp_path / "out", recipe, max_steps=1)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    terms = trainer.loss_terms(trainer.model, batch)
    assert set(terms) == {"logits"} and terms["logits"].item() > 0  # identical models: the own MLM loss remains
    trainer.recipe.distillation.hardness = 1.0
    trainer.recipe.distillation.student_mask_probability = 0.0
    assert trainer.loss_terms(trainer.model, batch)["logits"].item() == pytest.approx(0.0, abs=1e-6)


def _cli(tmp_path, model_dir, corpus, *extra):
    return ["--model", str(model_dir), "--train_file", str(corpus), "--output_dir", str(tmp_path / "out"),
            "--max_steps", "4", "--per_device_train_batch_size", "4", "--max_seq_length", "32",
            "--disable_tqdm", "true", "--use_cpu", "true", "--logging_steps", "1", *extra]


def test_cli_writes_a_checkpoint_report_and_refuses_to_overwrite_it(tiny_dense_dir, small_corpus, tmp_path, capsys):
    assert main(_cli(tmp_path, tiny_dense_dir, small_corpus, "--sparsity", "0.8")) == 0
    out = tmp_path / "out"
    results = json.loads((out / "upstream_results.json").read_text())
    report = json.loads((out / "sparsity_report.json").read_text())
    assert results["mask_violations"] == 0 == report["mask_violations"]
    assert report["zero_params"] == round(0.8 * report["total_params"])
    header = (out / "training_steps.csv").read_text().splitlines()[0]
    assert header == "step,sparsity,loss,loss_hidden,loss_attention,loss_embedding,learning_rate"
    assert (out / "loss.png").stat().st_size > 0 and (out / "sparsity.png").stat().st_size > 0
    assert "pruning:" in (out / "recipe.yaml").read_text()
    from transformers import AutoModelForSequenceClassification

    from sparse_transfer.masks import MaskedWeights

    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)
    fixed = MaskedWeights.from_nonzero(classifier, within=["bert.encoder.layer"])
    assert fixed.mask_sparsity() == report["global_sparsity"]  # sparse transfer holds exactly these zeros
    before = (out / "upstream_results.json").read_bytes()
    capsys.readouterr()
    assert main(_cli(tmp_path, tiny_dense_dir, small_corpus)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "already holds results" in errors[0]
    assert (out / "upstream_results.json").read_bytes() == before


def test_own_mlm_loss_without_masked_tokens_is_refused():
    from sparse_transfer.upstream import load_upstream_recipe

    with pytest.raises(ConfigurationError, match="needs masked tokens"):
        load_upstream_recipe({"distillation": {"logits": 1.0, "hardness": 0.5}})


def _no_blocks_model(tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    path = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=100)).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(path)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing corpus", "does not exist"),
    ("empty corpus", "holds no text"),
    ("sparsity", "pruning.sparsity must be in (0, 1)"),
    ("no blocks", "its blocks hold Conv1D weights: set the recipe's mask.module_types (sparse-transfer upstream: "
                  "--module_types) to Conv1D"),
    ("block path", "block path 'encoder' is not a module list in BertModel; set the recipe's mask.block_path "
                   "(sparse-transfer upstream: --block_path)"),
    ("unknown loss term", "unknown key 'distillation.kl_everything'"),
    ("fisher too big", "the oBS Fisher needs"),
])
def test_bad_input_gets_one_line_and_exit_2(tiny_dense_dir, small_corpus, tmp_path, capsys, monkeypatch, case, message):
    model, corpus, extra = tiny_dense_dir, small_corpus, []
    if case == "missing corpus":
        corpus = tmp_path / "missing.txt"
    elif case == "empty corpus":
        corpus = tmp_path / "empty.txt"
        corpus.write_text("\n\n")
    elif case == "sparsity":
        extra = ["--sparsity", "1.5"]
    elif case == "no blocks":
        model = _no_blocks_model(tmp_path)
    elif case == "block path":
        extra = ["--block_path", "encoder"]
    elif case == "unknown loss term":
        recipe = tmp_path / "r.yaml"
        recipe.write_text("distillation: {kl_everything: 1.0}\n")
        extra = ["--recipe", str(recipe)]
    elif case == "fisher too big":
        monkeypatch.setattr("sparse_transfer.upstream.trainer.available_memory", lambda device: 1024)
        extra = ["--criterion", "obs"]
    assert main(_cli(tmp_path, model, corpus, *extra)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("sparse-transfer upstream: error:"), errors
    assert message in errors[0]
    assert not (tmp_path / "out" / "config.json").exists()


@pytest.mark.slow
def test_real_minilm_upstream_run(tmp_path, small_corpus):
    """The real MiniLM to 90% in a few steps, through the module entry point."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "sparse_transfer.upstream", *_cli(tmp_path, minilm_dir(), small_corpus,
                             "--sparsity", "0.9")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["zero_params"] == round(0.9 * report["total_params"]) and report["mask_violations"] == 0
    assert set(report["blocks"]) == {str(i) for i in range(6)}
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).architectures == ["BertModel"]
    assert (out / "tokenizer.json").exists()


def test_teacher_flag_distils_a_sparse_model_from_its_dense_teacher(tiny_dense_dir, tiny_model_dir):
    from sparse_transfer.upstream import load_upstream_recipe
    from sparse_transfer.upstream.run import UpstreamArguments, load_models

    run = UpstreamArguments(model=str(tiny_model_dir), teacher=str(tiny_dense_dir), train_file="x")
    student, teacher, _ = load_models(run, load_upstream_recipe())
    name = "encoder.layer.0.attention.self.query.weight"
    assert int((student.get_parameter(name) == 0).sum()) > 0 and int((teacher.get_parameter(name) == 0).sum()) == 0
    alone = load_models(UpstreamArguments(model=str(tiny_model_dir), train_file="x"), load_upstream_recipe())
    assert torch.equal(alone[1].get_parameter(name), alone[0].get_parameter(name))  # default: a copy of the student


@pytest.mark.parametrize("shipped_name, variant, embedding, max_steps", [
    ("obs_distill_cls", "upstream-90-obs-cls4-long", (1.0, "mse"), 3600),
    ("obs_distill_sentence", "upstream-90-obs-cls4-cosine-long", (4.0, "cosine"), 3600),
    ("obs_distill_cosine", "upstream-90-obs-cls4-cosine1-long", (1.0, "cosine"), 3600),
    ("cosine_continue", "upstream-90-obs-cls4-cosine1-long-plus600", (1.0, "cosine"), 600),
    ("cosine_continue", "upstream-90-obs-cls4-cosine1-long-plus1200", (1.0, "cosine"), 600),
])
def test_shipped_obs_recipes_are_the_measured_variants(tmp_path, monkeypatch, shipped_name, variant, embedding,
                                                       max_steps):
    # each shipped recipe must stay what upstream_minilm.py ran (and RESULTS_upstream.md reports) as that variant
    from sparse_transfer.upstream import load_upstream_recipe

    bench = load_benchmark("common")
    monkeypatch.setattr(bench, "WORK", tmp_path)
    measured = load_upstream_recipe(str(ROOT / bench.recipe_path(variant))).to_dict()
    shipped = load_upstream_recipe(shipped_name).to_dict()
    for recipe in (measured, shipped):
        del recipe["name"], recipe["description"]
    assert shipped == measured
    distillation = shipped["distillation"]
    assert (distillation["embedding"], distillation["embedding_loss"]) == embedding
    assert distillation["cls"] == 4.0 and shipped["training"]["max_steps"] == max_steps


def test_a_continuation_builds_its_start_first_and_naming_it_builds_nothing(tmp_path, monkeypatch):
    bench = load_benchmark("common")
    monkeypatch.setattr(bench, "WORK", tmp_path)
    ran = []
    monkeypatch.setattr(bench.subprocess, "run", lambda command, **kwargs: ran.append(command))
    continuation, start = "upstream-90-magnitude-cls4-long-embed", "upstream-90-magnitude-cls4-long"
    command = bench.upstream_command(continuation)
    assert ran == []
    assert command[command.index("--model") + 1] == bench.relative(tmp_path / "upstream" / start)
    bench.model_path(continuation)
    outputs = [Path(c[c.index("--output_dir") + 1]).name for c in ran if "--output_dir" in c]
    assert outputs == [start, continuation]


def test_seed_repeats_run_with_their_seed_and_are_summarized_with_seed_0(tmp_path, monkeypatch):
    bench = load_benchmark("upstream_minilm")
    monkeypatch.setattr(bench, "RECORDS", tmp_path)
    monkeypatch.setattr(bench, "model_path", lambda name: "dense-dir")
    calls = []

    def fake_glue_run(task, model, recipe, lr, seed, out, extra):
        calls.append((task, recipe, lr, seed, out.name, extra))
        return {"best": {"eval_pearson": 0.76 + seed / 100}}

    monkeypatch.setattr(bench, "glue_run", fake_glue_run)
    monkeypatch.setattr(bench, "accelerator", lambda: "none")
    record = {"model": "dense"}
    assert bench.seed_spread(record) == "not run"
    for evaluation in ("stsb_gradual_unfreeze_best", "stsb_gradual_unfreeze_best_seed2"):
        bench.run_job("dense", evaluation)
    assert [call[3] for call in calls] == [0, 2]
    assert calls[1][:3] == ("stsb", "gradual_unfreeze", bench.DENSE_LR)
    assert calls[1][4:] == ("dense_stsb_gradual_unfreeze_best_seed2", ("--dropout", "0.05"))
    record = bench.load_record("dense")
    assert record["stsb_gradual_unfreeze_best_seed2"]["seed"] == 2
    assert bench.seed_spread(record) == "76.0, not run, 78.0 (77.0 ± 1.4)"
