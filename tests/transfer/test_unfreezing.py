"""The parameter roles of the unfreezing schedule."""

from helpers import tiny_sparse_bert

from sparse_transfer.encoders import find_blocks
from sparse_transfer.transfer.unfreezing import ParameterGroups, gradual_unfreeze_plan


def test_parameter_roles_of_a_bert():
    model = tiny_sparse_bert(num_layers=2)
    path, blocks = find_blocks(model)
    groups = ParameterGroups.of(model, path, blocks)
    assert [len(w) for w in groups.block_weights] == [6, 6]  # q, k, v, attn out, intermediate, out
    assert {n for n, _ in groups.embedding_path} == {f"bert.embeddings.{e}_embeddings.weight"
                                                 for e in ("word", "position", "token_type")}
    always = {n for n, _ in groups.always}
    assert "classifier.weight" in always and "bert.pooler.dense.weight" in always
    assert "bert.encoder.layer.0.attention.self.query.bias" in always
    assert "bert.embeddings.LayerNorm.weight" in always
    plan = gradual_unfreeze_plan(2)
    count = groups.apply(plan.stages[0], train_embeddings=False)
    assert count == sum(p.numel() for _, p in groups.always)
    assert not model.bert.encoder.layer[1].output.dense.weight.requires_grad
