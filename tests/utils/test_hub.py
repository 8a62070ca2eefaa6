"""Without the hub: a run that needs it stops in seconds with one line and the offline flags."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from sparse_transfer.utils import hub
from sparse_transfer.utils.errors import ConfigurationError

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def test_require_hub_fails_fast_with_the_offline_route(monkeypatch):
    monkeypatch.setattr(hub.constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"cannot reach the Hugging Face hub \(http://127.0.0.1:9\) to "
                                                 r"fetch model bert-base-uncased; run offline with --x DIR"):
        hub.require_hub(["model bert-base-uncased"], "--x DIR")
    assert time.monotonic() - start < hub.PROBE_SECONDS + 1
    hub.require_hub([], "--x DIR")  # nothing wanted from the hub: nothing checked


def test_offline_mode_and_local_paths_skip_the_probe(monkeypatch, tmp_path):
    monkeypatch.setattr(hub.constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    hub.require_hub(["model bert-base-uncased"], "--x DIR")  # HF_HUB_OFFLINE=1: the cache decides, no probe
    assert not hub.is_hub_name(str(tmp_path)) and hub.is_hub_name("bert-base-uncased")


def test_unloadable_model_is_one_line(tmp_path):
    with pytest.raises(ConfigurationError, match="--model_name_or_path /nonexistent/model: no such directory"):
        hub.load_or_explain(lambda name: name, "/nonexistent/model", "--model_name_or_path")
    with pytest.raises(ConfigurationError, match=r"cannot load --model_name_or_path \S+ \(no config"):
        hub.load_or_explain(lambda name: (_ for _ in ()).throw(OSError("no config\nmore")), str(tmp_path),
                            "--model_name_or_path")


@pytest.mark.parametrize("launcher", [[sys.executable], [str(Path(sys.executable).parent / "accelerate"), "launch", "-q"]])
def test_readme_main_job_without_the_hub_exits_with_one_line(tmp_path, launcher):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=UNREACHABLE, HF_HOME=str(tmp_path / "hf"), ACCELERATE_CONFIG_FILE=str(tmp_path / "none"))
    result = subprocess.run([*launcher, str(ROOT / "run_glue.py"), "--task", "rte"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    if len(launcher) == 1:
        assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]  # under the launcher too: the last line, no traceback after it
    assert line.startswith("run_glue.py: error: cannot reach the Hugging Face hub (http://127.0.0.1:9) to fetch "
                           "model neuralmagic/oBERT-12-upstream-pruned-unstructured-90-v2 and dataset nyu-mll/glue")
    assert "--model_name_or_path DIR and --data_dir DIR" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
