"""Encoders of several families as the toolkit reads them (tiny random models, no download):
where the blocks are, which weights each workflow selects, what the stage plan freezes and why,
per-layer sparsity bounds of global pruning, and one-line errors where a family does not fit."""

import json

import pytest
import torch
from helpers import ToyDataset, minilm_dir, tiny_encoder
from transformers import TrainerCallback, TrainingArguments

from sparse_transfer import SparseTransferTrainer
from sparse_transfer.encoders import UnknownArchitectureError, embedding_path, find_blocks
from sparse_transfer.pruning import capped_layers, magnitude_masks
from sparse_transfer.selection import Selection
from sparse_transfer.transfer.recipe import load_recipe
from sparse_transfer.transfer.unfreezing import ParameterGroups
from sparse_transfer.upstream.oneshot import prune_model
from sparse_transfer.utils.errors import ConfigurationError

# family: (block path, blocks, weights per block, embedding-path weights outside the embeddings module,
#          tables every block reads)
FAMILIES = {
    "bert": ("bert.encoder.layer", 2, 6, [], []),
    "electra": ("electra.encoder.layer", 2, 6, ["electra.embeddings_project.weight"], []),
    "albert": ("albert.encoder.albert_layer_groups", 1, 6, ["albert.encoder.embedding_hidden_mapping_in.weight"], []),
    "deberta-v2": ("deberta.encoder.layer", 2, 6, [], ["deberta.encoder.rel_embeddings.weight"]),
    "mpnet": ("mpnet.encoder.layer", 2, 6, [], ["mpnet.encoder.relative_attention_bias.weight"]),
    "modernbert": ("model.layers", 3, 4, [], []),
    "mobilebert": ("mobilebert.encoder.layer", 2, 15, [], []),  # not the nested 3-FFN lists inside each layer
}


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_and_parameter_roles_of_each_family(family):
    path, count, per_block, projections, tables = FAMILIES[family]
    model = tiny_encoder(family)
    found, blocks = find_blocks(model)
    assert (found, len(blocks)) == (path, count)
    base_path = path.split(".", 1)[1]  # the same list named from the base encoder
    assert find_blocks(model, base_path)[0] == path
    assert find_blocks(model.base_model, path)[0] == base_path
    groups = ParameterGroups.of(model, found, blocks)
    assert [len(weights) for weights in groups.block_weights] == [per_block] * count
    embedding = {name for name, _ in groups.embedding_path}
    table = model.get_input_embeddings()
    assert any(param is table.weight for _, param in groups.embedding_path)
    assert set(projections) <= embedding and not any(name.endswith(".bias") or "Norm" in name for name in embedding)
    assert [name for name, _ in groups.shared_tables] == tables
    every = [name for name, _ in groups.named_parameters()]
    assert sorted(every) == sorted(name for name, _ in model.named_parameters())  # each once, none lost


def test_embedding_path_includes_the_projections_a_user_reads_as_embedding():
    electra = tiny_encoder("electra")
    assert embedding_path(electra, "electra.encoder.layer") == [
        "electra.embeddings.word_embeddings.weight", "electra.embeddings.position_embeddings.weight",
        "electra.embeddings.token_type_embeddings.weight", "electra.embeddings_project.weight"]
    mobilebert = tiny_encoder("mobilebert")
    assert "mobilebert.embeddings.embedding_transformation.weight" in embedding_path(
        mobilebert, "mobilebert.encoder.layer")


def test_conv1d_blocks_are_found_and_selected_only_when_named():
    model = tiny_encoder("squeezebert")
    with pytest.raises(UnknownArchitectureError, match="its blocks hold Conv1d weights: set module_types to Conv1d"):
        find_blocks(model)
    with pytest.raises(UnknownArchitectureError, match="the blocks at transformer.encoder.layers hold no Linear weights; "
                                                       "set module_types to Conv1d"):
        find_blocks(model, "encoder.layers")
    path, blocks = find_blocks(model, None, ["Conv1d"])
    assert path == "transformer.encoder.layers"
    groups = ParameterGroups.of(model, path, blocks, ["Conv1d"])
    assert [len(weights) for weights in groups.block_weights] == [6, 6]
    masked = prune_model(model, 0.75, selection=Selection(["Conv1d"]))
    report = masked.report()
    assert report["num_masked_weights"] == 12 and report["zero_params"] == round(0.75 * report["total_params"])


def test_global_pruning_never_empties_the_smaller_layers_of_modernbert():
    model = tiny_encoder("modernbert", head=False)
    path, _ = find_blocks(model)
    weights = Selection().select(model, within=[path])
    uncapped = magnitude_masks(weights, 0.9)
    emptied = sorted(name for name, mask in uncapped.items() if not mask.any())
    assert emptied and all(name.endswith("Wo.weight") for name in emptied)  # the trap: smaller initial spread
    report = prune_model(model, 0.9).report()  # default cap 0.99
    assert report["zero_params"] == round(0.9 * report["total_params"])
    assert max(layer["sparsity"] for layer in report["layers"].values()) <= 0.99
    assert all(layer["zeros"] < layer["numel"] for layer in report["layers"].values())


def test_capped_global_masks_keep_the_count_and_one_threshold_for_the_uncapped_layers():
    torch.manual_seed(0)
    scales = {"small": 0.01, "mid": 1.0, "large": 3.0}
    weights = {name: torch.randn(40, 50) * scale for name, scale in scales.items()}
    masks = magnitude_masks(weights, 0.6, max_layer_sparsity=0.8)
    pruned = {name: int((~mask).sum()) for name, mask in masks.items()}
    assert sum(pruned.values()) == round(0.6 * 6000)
    assert pruned["small"] == int(0.8 * 2000)  # capped: the uncapped threshold takes all 2000
    assert int((~magnitude_masks(weights, 0.6)["small"]).sum()) == 2000
    free = {name: weights[name].abs() for name in ("mid", "large")}
    assert max(float(w[~masks[n]].max()) for n, w in free.items()) <= min(float(w[masks[n]].min()) for n, w in free.items())
    kept_small = weights["small"].abs()[masks["small"]]
    assert float(kept_small.min()) >= float(weights["small"].abs()[~masks["small"]].max())
    with pytest.raises(ConfigurationError, match="cannot be reached with no layer above 50.00%"):
        magnitude_masks(weights, 0.6, max_layer_sparsity=0.5)


def test_a_layer_at_the_cap_of_its_1x4_blocks_counts_as_capped():
    # 589,824 weights = 147,456 blocks; the cap keeps int(0.99 * 147,456) = 145,981 blocks pruned: 583,924 zeros,
    # one block short of int(0.99 * 589,824) = 583,925 weights
    report = {"layers": {"ffn": {"zeros": 583924, "numel": 589824}, "other": {"zeros": 500000, "numel": 589824}}}
    assert capped_layers(report, 0.99, block=4) == ["ffn"]
    assert capped_layers(report, 0.99) == []
    weights = {"small": torch.randn(8, 64) * 0.01, "large": torch.randn(8, 64)}
    masks = magnitude_masks(weights, 0.6, block=4, max_layer_sparsity=0.9)
    report = {"layers": {name: {"zeros": int((~mask).sum()), "numel": mask.numel()} for name, mask in masks.items()}}
    assert report["layers"]["small"]["zeros"] == 4 * int(0.9 * 128) and capped_layers(report, 0.9, 4) == ["small"]


class _TrainableSets(TrainerCallback):
    """The names of the parameters that require grad as each epoch begins (the trainer's own
    callback, added first, has set the stage)."""

    def __init__(self, model):
        self.model, self.epochs = model, []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epochs.append({name for name, param in self.model.named_parameters() if param.requires_grad})


def _train(family, tmp_path, module_types=None):
    model = tiny_encoder(family)
    zeros = prune_model(model, 0.5, selection=Selection(module_types or ["Linear"])).report()["zero_params"]
    recipe = load_recipe("gradual_unfreeze", {"mask.module_types": module_types})
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16, learning_rate=1e-3,
                             report_to="none", use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True)
    data = ToyDataset(n=32)
    trainer = SparseTransferTrainer(model, args, train_dataset=data, recipe=recipe)
    recorder = _TrainableSets(model)
    trainer.add_callback(recorder)
    trainer.train()
    report = trainer.sparsity_report()
    assert report["zero_params"] == zeros and report["mask_violations"] == 0  # the pretrained zeros held exactly
    return trainer, recorder.epochs, json.loads((tmp_path / "stage_plan.json").read_text())


def _blocks_training(trainer, trainable: set[str]) -> list[int]:
    return [index for index, weights in enumerate(trainer.parameter_groups.block_weights)
            if all(name in trainable for name, _ in weights)]


@pytest.mark.parametrize("family, module_types", [("deberta-v2", None), ("electra", None), ("squeezebert", ["Conv1d"])])
def test_stage_plan_unfreezes_back_to_front_and_records_what_stays_frozen(family, module_types, tmp_path):
    trainer, epochs, plan = _train(family, tmp_path, module_types=module_types)
    assert [_blocks_training(trainer, trainable) for trainable in epochs] == [[], [1], [0, 1], [0, 1]]
    assert [stage["trainable_blocks"] for stage in plan["stages"]] == [[], [1], [0, 1], [0, 1]]
    for trainable, stage in zip(epochs, plan["stages"]):
        assert stage["trainable_parameters"] == sum(
            p.numel() for n, p in trainer.model.named_parameters() if n in trainable)
        assert not any(name in trainable for name in plan["groups"]["embedding_path"]["parameters"])
    tables = plan["groups"]["shared_tables"]["parameters"]
    if family == "deberta-v2":  # read by every block: trains from the stage where every block trains
        assert [all(name in trainable for name in tables) for trainable in epochs] == [False, False, True, True]
        assert [("shared_tables" in stage["trainable_groups"]) for stage in plan["stages"]] == [False, False, True, True]
    if family == "electra":
        assert "electra.embeddings_project.weight" in plan["groups"]["embedding_path"]["parameters"]
        assert "electra.embeddings_project.bias" in epochs[0]  # biases train in every stage
    assert plan["module_types"] == (module_types or ["Linear"]) and plan["shared_blocks"] is None


def test_shared_block_model_says_so(tmp_path):
    with pytest.warns(UserWarning, match="runs 1 block.s. of shared weights for its 2 layers"):
        trainer, epochs, plan = _train("albert", tmp_path)
    assert len(epochs) == 3 and "shared weights" in plan["shared_blocks"]


def test_prune_cli_on_conv1d_blocks_gives_advice_that_works(tmp_path, capsys):
    from transformers import AutoTokenizer

    from sparse_transfer.inference.export import main as export
    from sparse_transfer.upstream.oneshot import main as prune

    source = tmp_path / "squeezebert"
    tiny_encoder("squeezebert", head=False).save_pretrained(source)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(source)

    def one_error(code):
        assert code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(errors) == 1, errors
        return errors[0]

    out = tmp_path / "pruned"
    assert "set --module_types to Conv1d" in one_error(prune(["--model", str(source), "--sparsity", "0.9",
                                                              "--output", str(out)]))
    assert "set --module_types to Conv1d" in one_error(prune(["--model", str(source), "--sparsity", "0.9",
                                                              "--block_path", "encoder.layers", "--output", str(out)]))
    assert "prunes none" in one_error(prune(["--model", str(source), "--sparsity", "0.001", "--module_types", "Conv1d",
                                             "--include", "query", "--scope", "per-layer", "--output", str(out)]))
    assert "matches include ['nothing']" in one_error(prune(["--model", str(source), "--sparsity", "0.9",
                                                             "--module_types", "Conv1d", "--include", "nothing",
                                                             "--output", str(out)]))
    assert not out.exists()
    assert prune(["--model", str(source), "--sparsity", "0.9", "--module_types", "Conv1d", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["num_masked_weights"] == 12 and report["zero_params"] == round(0.9 * report["total_params"])
    assert "(89.99%), per layer " in printed  # round(0.9 * 4096) = 3686 zeros
    exported = tmp_path / "exported"
    message = one_error(export(["--model", str(out), "--output", str(exported), "--repeats", "1", "--batch_sizes", "1",
                                "--seq_length", "8"]))
    assert "are Conv1d modules" in message and "nothing to export" in message and not exported.exists()


def test_prune_cli_prints_the_per_layer_extremes_and_warns_at_the_cap(tmp_path, capsys):
    from transformers import AutoTokenizer

    from sparse_transfer.upstream.oneshot import main as prune

    source = tmp_path / "modernbert"
    tiny_encoder("modernbert", head=False).save_pretrained(source)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(source)
    assert prune(["--model", str(source), "--sparsity", "0.9", "--output", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    # the 16 x 16 output projections stop at int(0.99 * 256) = 253 zeros
    assert "(90.00%), per layer 85.64% (layers.0.mlp.Wi.weight) to 98.83% (layers.0.attn.Wo.weight)" in captured.out
    assert "layers reached --max_layer_sparsity 0.99" in captured.err and "--scope per-layer" in captured.err
    assert prune(["--model", str(source), "--sparsity", "0.9", "--max_layer_sparsity", "0.8",
                  "--output", str(tmp_path / "refused")]) == 2
    assert "--max_layer_sparsity must be in [--sparsity, 1)" in capsys.readouterr().err


def test_run_glue_refuses_a_model_without_a_classification_head_in_one_line(tmp_path, capsys):
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from sparse_transfer.transfer.run import main

    model_dir = tmp_path / "clip-text"
    CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=16)).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(model_dir)
    data = tmp_path / "train.csv"
    data.write_text("sentence,label\na b,0\nc d,1\n")
    assert main(["--model_name_or_path", str(model_dir), "--tokenizer_name", str(model_dir), "--train_file", str(data),
                 "--validation_file", str(data), "--output_dir", str(tmp_path / "out")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "'clip_text_model' model, for which transformers has no sequence-classification head" \
        in errors[0]
