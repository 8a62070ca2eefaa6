"""The unfreezing schedule: which transformer blocks train in which stage.

Stage 0 trains the head, pooler, every bias and every LayerNorm; stage k = 1..N also
unfreezes the Linear weights of block N-k (back to front); a final stage trains them
all together. A dense-transfer recipe is the one-stage special case.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sparse_transfer.utils.errors import ConfigurationError


@dataclass(frozen=True)
class Stage:
    index: int
    epochs: int
    trainable_blocks: tuple[int, ...]  # blocks whose Linear weights train in this stage


@dataclass(frozen=True)
class StagePlan:
    stages: tuple[Stage, ...]

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.stages)

    def stage_at_epoch(self, epoch: int) -> Stage:
        """The stage that owns (0-based) `epoch`; past the end, the last stage."""
        end = 0
        for stage in self.stages:
            end += stage.epochs
            if epoch < end:
                return stage
        return self.stages[-1]

    def epochs_per_stage(self) -> list[int]:
        return [stage.epochs for stage in self.stages]


def gradual_unfreeze_plan(
    num_blocks: int, epochs_per_stage: int = 1, final_stage_epochs: int = 1, unfreeze_blocks: int | None = None
) -> StagePlan:
    """1 + N + 1 stages for N blocks (the paper's 14 epochs for BERT-base).

    `unfreeze_blocks` stops after the last U blocks (ULMFiT-style partial transfer);
    the final stage then trains those U blocks together."""
    unfreeze = num_blocks if unfreeze_blocks is None else unfreeze_blocks
    if not 1 <= unfreeze <= num_blocks:
        raise ConfigurationError(
            f"the stage plan unfreezes {unfreeze} blocks but the model has {num_blocks}; "
            f"set schedule.unfreeze_blocks between 1 and {num_blocks} (or leave it empty for all)"
        )
    if epochs_per_stage < 1 or final_stage_epochs < 0:
        raise ConfigurationError(
            f"need schedule.epochs_per_stage >= 1 and final_stage_epochs >= 0; got {epochs_per_stage}, "
            f"{final_stage_epochs}"
        )
    stages = [Stage(0, epochs_per_stage, ())]
    for k in range(1, unfreeze + 1):
        stages.append(Stage(k, epochs_per_stage, tuple(range(num_blocks - k, num_blocks))))
    if final_stage_epochs:
        stages.append(Stage(unfreeze + 1, final_stage_epochs, stages[-1].trainable_blocks))
    return StagePlan(tuple(stages))


def dense_plan(num_blocks: int, epochs: int) -> StagePlan:
    """Everything trains from the first step (the dense-transfer recipe)."""
    if epochs < 1:
        raise ConfigurationError(f"schedule.epochs must be >= 1, got {epochs}")
    return StagePlan((Stage(0, epochs, tuple(range(num_blocks))),))


@dataclass
class ParameterGroups:
    """The model's parameters by their role in the schedule."""

    block_linear_weights: list[list[tuple[str, nn.Parameter]]]  # per block
    embeddings: list[tuple[str, nn.Parameter]]  # never train when frozen
    always: list[tuple[str, nn.Parameter]]  # head, pooler, biases, LayerNorms

    @classmethod
    def of(cls, model: nn.Module, block_path: str, blocks: nn.ModuleList) -> "ParameterGroups":
        per_block = []
        claimed = set()
        for index, block in enumerate(blocks):
            weights = []
            for module_name, module in block.named_modules():
                if isinstance(module, nn.Linear):
                    name = ".".join(part for part in (block_path, str(index), module_name, "weight") if part)
                    weights.append((name, module.weight))
                    claimed.add(id(module.weight))
            per_block.append(weights)
        embedding_ids = {
            id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)
        }
        embeddings, always = [], []
        for name, param in model.named_parameters():
            if id(param) in claimed:
                continue
            (embeddings if id(param) in embedding_ids else always).append((name, param))
        return cls(per_block, embeddings, always)

    def trainable_names(self, stage: Stage, train_embeddings: bool) -> set[str]:
        names = {name for name, _ in self.always}
        if train_embeddings:
            names |= {name for name, _ in self.embeddings}
        for index in stage.trainable_blocks:
            names |= {name for name, _ in self.block_linear_weights[index]}
        return names

    def ever_trainable(self, plan: StagePlan, train_embeddings: bool) -> list[tuple[str, nn.Parameter]]:
        names = set().union(*(self.trainable_names(s, train_embeddings) for s in plan.stages))
        return [(n, p) for n, p in self.named_parameters() if n in names]

    def apply(self, stage: Stage, train_embeddings: bool) -> int:
        """Set `requires_grad` for `stage`; return the trainable parameter count."""
        names = self.trainable_names(stage, train_embeddings)
        count = 0
        for name, param in self.named_parameters():
            param.requires_grad_(name in names)
            count += param.numel() if name in names else 0
        return count

    def named_parameters(self):
        """Every parameter of the model once, as (name, parameter)."""
        for weights in self.block_linear_weights:
            yield from weights
        yield from self.embeddings
        yield from self.always
