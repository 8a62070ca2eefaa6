"""Where a rerun picks up: refuse to replace finished results, resume an interrupted
run from its last complete checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from sparse_transfer.utils.errors import ConfigurationError


def resume_point(output_dir: str, overwrite: bool, resume_from_checkpoint: str | None, finished_marker: str) -> str | None:
    """The checkpoint to resume from (None: start afresh). `finished_marker` is the file
    written last by a finished run."""
    if resume_from_checkpoint:
        return resume_from_checkpoint
    if not os.path.isdir(output_dir):
        return None
    if overwrite:
        # The old results stop counting now: an interrupted rerun must not look finished.
        Path(output_dir, finished_marker).unlink(missing_ok=True)
        return None
    if os.path.exists(os.path.join(output_dir, finished_marker)):
        raise ConfigurationError(
            f"output directory {output_dir} already holds results ({finished_marker}); "
            "pass --overwrite_output_dir to replace them or choose another --output_dir"
        )
    return last_complete_checkpoint(output_dir)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint whose trainer_state.json (written last) is readable: a run
    killed while writing a checkpoint resumes from the one before."""
    steps = {}
    for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if step.isdigit():
            steps[int(step)] = path
    for _, checkpoint in sorted(steps.items(), reverse=True):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        return str(checkpoint)
    return None
