import pytest
import torch
import torch.nn.functional as F
from helpers import SENTENCES
from transformers import AutoModel, AutoTokenizer

from sparse_transfer.upstream.evaluation import (
    embedding_fidelity,
    sentence_embeddings,
    zero_shot_similarity,
)
from sparse_transfer.upstream.oneshot import prune_model


@pytest.fixture(scope="module")
def tiny(tiny_dense_dir):
    return AutoModel.from_pretrained(tiny_dense_dir), AutoTokenizer.from_pretrained(tiny_dense_dir)


def test_embeddings_are_mean_pooled_over_real_tokens(tiny):
    model, tokenizer = tiny
    alone = sentence_embeddings(model, tokenizer, SENTENCES[:1])
    padded = sentence_embeddings(model, tokenizer, SENTENCES[:2])  # the first is padded to the second's length
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_fidelity_is_one_for_the_model_itself_and_lower_once_pruned(tiny, tiny_dense_dir):
    model, tokenizer = tiny
    assert embedding_fidelity(model, model, tokenizer, SENTENCES) == pytest.approx(1.0, abs=1e-6)
    pruned = AutoModel.from_pretrained(tiny_dense_dir)
    prune_model(pruned, 0.9)
    assert embedding_fidelity(pruned, model, tokenizer, SENTENCES) < 1.0 - 1e-5  # random tiny model: small but real


def test_zero_shot_similarity_ranks_pairs_by_cosine(tiny):
    model, tokenizer = tiny
    first, second = SENTENCES[:6], SENTENCES[6:]
    cosines = F.cosine_similarity(sentence_embeddings(model, tokenizer, first), sentence_embeddings(model, tokenizer, second))
    assert zero_shot_similarity(model, tokenizer, first, second, cosines.tolist()) == pytest.approx(100.0)
    assert zero_shot_similarity(model, tokenizer, first, second, (-cosines).tolist()) == pytest.approx(-100.0)


def test_cross_segment_attention_is_a_share_per_block(tiny_dense_dir):
    from sparse_transfer.upstream.evaluation import cross_segment_attention

    model = AutoModel.from_pretrained(tiny_dense_dir, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(tiny_dense_dir)
    first, second = SENTENCES[:6], SENTENCES[6:]  # "the" occurs in both sentences of several pairs
    shares = cross_segment_attention(model, tokenizer, first, second)
    assert set(shares) == {"other_segment", "same_token"}
    assert len(shares["other_segment"]) == 2 and all(0.0 < s < 1.0 for s in shares["other_segment"])
    # a random tiny model attends almost uniformly: the share is near the other segment's share of tokens
    ids = tokenizer(first, second)["token_type_ids"]
    expected = sum(2 * row.count(0) * row.count(1) / len(row) for row in ids) / sum(len(row) for row in ids)
    assert shares["other_segment"][0] == pytest.approx(expected, abs=0.05)
    assert all(0.0 < s < shares["other_segment"][i] for i, s in enumerate(shares["same_token"]))


def test_joint_pair_similarity_pools_each_sentence_of_the_pair_at_every_block(tiny):
    from sparse_transfer.upstream.evaluation import joint_pair_similarity

    model, tokenizer = tiny
    first, second = SENTENCES[:6], SENTENCES[6:]
    batch = tokenizer(first, second, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    expected = []
    for row in range(len(first)):  # block 1's output, sentence a's and b's word tokens pooled by hand
        ids, types = batch["input_ids"][row].tolist(), batch["token_type_ids"][row].tolist()
        words = [i for i, t in enumerate(ids) if t not in tokenizer.all_special_ids]
        a = hidden[1][row, [i for i in words if types[i] == 0]].mean(0)
        b = hidden[1][row, [i for i in words if types[i] == 1]].mean(0)
        expected.append(float(F.cosine_similarity(a, b, dim=0)))
    scores = joint_pair_similarity(model, tokenizer, first, second, expected, batch_size=4)
    assert len(scores) == model.config.num_hidden_layers and scores[0] == pytest.approx(100.0)
    assert joint_pair_similarity(model, tokenizer, first, second, [-c for c in expected])[0] == pytest.approx(-100.0)


def test_linear_probe_reads_what_the_frozen_pair_features_hold(tiny):
    from sparse_transfer.upstream.evaluation import linear_probe, pair_features

    model, tokenizer = tiny
    first, second = SENTENCES[:6] * 4, SENTENCES[6:] * 4
    features = pair_features(model, tokenizer, first, second, batch_size=5)
    assert features["cls"].shape == (24, model.config.hidden_size)
    assert features["segments"].shape == (24, 4 * model.config.hidden_size)
    u, v = features["segments"][:, :16], features["segments"][:, 16:32]
    assert torch.allclose(features["segments"][:, 32:48], (u - v).abs()) and not torch.allclose(u, v)
    gold = (features["cls"][:, 0] * 3 + features["cls"][:, 1]).tolist()  # a linear function of the [CLS] state
    scores = linear_probe(features, gold, features, gold)
    assert set(scores) == {"cls", "segments"} and scores["cls"] > 99.0
