"""An INT8 export of a tiny 90%-sparse BERT whose heads are 32 wide (what the fused INT8 steps and
the bf16 attention need), made once per test that asks for it."""

import pytest
from helpers import tiny_sparse_bert

from sparse_transfer.inference.export import export_for_inference


@pytest.fixture
def int8_export(tmp_path):
    """(the source checkpoint, its INT8 export: sparse_int8 everywhere, SDPA attention)."""
    source, out = tmp_path / "tiny", tmp_path / "int8"
    tiny_sparse_bert(sparsity=0.9, hidden_size=64).save_pretrained(source)
    export_for_inference(str(source), str(out), batch_sizes=(2,), seq_length=16, force_kernel="sparse_int8",
                         quantize="int8", attention="sdpa")
    return source, out
