"""Shared fixtures: a tiny sparse BERT and a learnable toy dataset (all offline)."""

import os

import pytest
import torch
from helpers import SENTENCES, ToyDataset, minilm_dir, save_tiny_dense_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def toy_data():
    return ToyDataset()


@pytest.fixture(scope="session")
def minilm_90(tmp_path_factory):
    """The real MiniLM (6 blocks), pruned one-shot to 90% with the prune CLI."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("minilm") / "minilm-90"
    subprocess.run([sys.executable, "-m", "sparse_transfer", "prune", "--model", minilm_dir(), "--sparsity", "0.9",
                    "--output", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random 2-block BERT, pruned to 50%, with the MiniLM's real tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sparse_transfer.upstream.oneshot import prune_model

    out = tmp_path_factory.mktemp("tiny") / "tiny-bert-50"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128)
    model = BertModel(config)
    prune_model(model, 0.5)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_dense_dir(tmp_path_factory):
    return save_tiny_dense_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert-dense")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A text corpus: documents of 1-3 lines separated by blank lines."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    documents = [SENTENCES[i:i + 1 + i % 3] for i in range(0, len(SENTENCES), 2)]
    path.write_text("\n\n".join("\n".join(d) for d in documents) + "\n")
    return path
