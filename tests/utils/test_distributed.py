"""Entry points release the process group, so gloo cannot abort a finished run at exit."""

import pytest
import torch.distributed as dist

from sparse_transfer.utils.errors import ConfigurationError, exit_status


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    yield
    if dist.is_initialized():  # only when the code under test failed to release it
        dist.destroy_process_group()


def test_a_finished_entry_point_releases_the_process_group(one_process_group):
    seen = []
    assert exit_status("prog", lambda: seen.append(dist.is_initialized())) == 0
    assert seen == [True]
    assert not dist.is_initialized()


def test_bad_input_still_releases_the_process_group(one_process_group, capsys):
    def bad_input():
        raise ConfigurationError("--sparsity 2 is not a fraction; pass a value in [0, 1)")

    assert exit_status("prog", bad_input) == 2
    assert capsys.readouterr().err == "prog: error: --sparsity 2 is not a fraction; pass a value in [0, 1)\n"
    assert not dist.is_initialized()


def test_a_crash_keeps_its_traceback_and_releases_the_process_group(one_process_group):
    def crash():
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError, match="a real bug"):
        exit_status("prog", crash)
    assert not dist.is_initialized()
