"""Block discovery across Hugging Face encoders, and parameter roles."""

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
)

from conftest import tiny_sparse_bert
from sparse_transfer.unfreezing import ParameterGroups, UnknownArchitectureError, find_blocks, gradual_unfreeze_plan

SMALL = dict(hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=50, max_position_embeddings=40)


@pytest.mark.parametrize("config, path", [
    (BertConfig(num_hidden_layers=3, **SMALL), "bert.encoder.layer"),
    (RobertaConfig(num_hidden_layers=3, pad_token_id=1, **SMALL), "roberta.encoder.layer"),
    (ElectraConfig(num_hidden_layers=3, embedding_size=16, **SMALL), "electra.encoder.layer"),
    (DistilBertConfig(n_layers=3, dim=16, n_heads=2, hidden_dim=32, vocab_size=50, max_position_embeddings=40),
     "distilbert.transformer.layer"),
])
def test_blocks_are_found_in_common_encoders(config, path):
    model = AutoModelForSequenceClassification.from_config(config)
    found, blocks = find_blocks(model)
    assert found == path and len(blocks) == 3


def test_parameter_roles_of_a_bert():
    model = tiny_sparse_bert(num_layers=2)
    path, blocks = find_blocks(model)
    groups = ParameterGroups.of(model, path, blocks)
    assert [len(w) for w in groups.block_linear_weights] == [6, 6]  # q, k, v, attn out, intermediate, out
    assert {n for n, _ in groups.embeddings} == {f"bert.embeddings.{e}_embeddings.weight"
                                                 for e in ("word", "position", "token_type")}
    always = {n for n, _ in groups.always}
    assert "classifier.weight" in always and "bert.pooler.dense.weight" in always
    assert "bert.encoder.layer.0.attention.self.query.bias" in always
    assert "bert.embeddings.LayerNorm.weight" in always
    plan = gradual_unfreeze_plan(2)
    count = groups.apply(plan.stages[0], train_embeddings=False)
    assert count == sum(p.numel() for _, p in groups.always)
    assert not model.bert.encoder.layer[1].output.dense.weight.requires_grad


def test_explicit_block_path_and_clear_errors():
    model = tiny_sparse_bert()
    assert find_blocks(model, "bert.encoder.layer")[0] == "bert.encoder.layer"
    with pytest.raises(UnknownArchitectureError, match="block_path 'bert.nothing' is not an nn.ModuleList"):
        find_blocks(model, "bert.nothing")
    with pytest.raises(UnknownArchitectureError, match="cannot find the transformer blocks of Linear"):
        find_blocks(torch.nn.Linear(2, 2))
