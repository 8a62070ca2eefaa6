"""How encoders are read: their transformer blocks, found or named."""

import pytest
import torch
from helpers import tiny_sparse_bert
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
)

from sparse_transfer.encoders import UnknownArchitectureError, find_blocks

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


def test_explicit_block_path_and_clear_errors():
    model = tiny_sparse_bert()
    assert find_blocks(model, "bert.encoder.layer")[0] == "bert.encoder.layer"
    with pytest.raises(UnknownArchitectureError, match="block path .bert.nothing. is not a module list"):
        find_blocks(model, "bert.nothing")
    with pytest.raises(UnknownArchitectureError, match="cannot find the transformer blocks of Linear"):
        find_blocks(torch.nn.Linear(2, 2))
