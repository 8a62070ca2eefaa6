"""What every sparse model the toolkit saves carries: its sparsity report (global, per
block, per layer, mask hash, violations) and the resolved recipe; a model with a
non-zero pruned weight is never saved silently."""

from __future__ import annotations

import os

from .reports import write_json_atomic

SPARSITY_REPORT_NAME = "sparsity_report.json"
RECIPE_NAME = "recipe.yaml"


class SparseCheckpointMixin:
    """For a `transformers.Trainer` subclass with `masks` (a `MaskedWeights`), `block_path`
    (the transformer blocks) and `recipe` (anything with `save(path)`)."""

    def block_of(self, name: str) -> str | None:
        prefix = self.block_path + "."
        return name[len(prefix):].split(".", 1)[0] if name.startswith(prefix) else None

    def sparsity_report(self) -> dict:
        return self.masks.report(group_of=self.block_of)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        report = self.sparsity_report()
        write_json_atomic(os.path.join(output_dir, SPARSITY_REPORT_NAME), report)
        self.recipe.save(os.path.join(output_dir, RECIPE_NAME))
        if report["mask_violations"]:
            raise RuntimeError(f"{report['mask_violations']} pruned weights are non-zero in the saved model")
