"""The unfreezing schedule: which transformer blocks train in which stage.

Stage 0 trains the head, pooler, every bias and every LayerNorm; stage k = 1..N also
unfreezes the weights of block N-k (back to front; the mask's module types, Linear by
default); a final stage trains them all together. A dense-transfer recipe is the one-stage
special case. The embedding path's weights stay frozen with `freeze_embeddings`; tables that
every block reads (relative positions) train in the stages where every block trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from sparse_transfer.encoders import embedding_path
from sparse_transfer.selection import Selection
from sparse_transfer.utils.errors import ConfigurationError


@dataclass(frozen=True)
class Stage:
    index: int
    epochs: int
    trainable_blocks: tuple[int, ...]  # blocks whose weights train in this stage


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

    block_weights: list[list[tuple[str, nn.Parameter]]]  # per block: the weights of the mask's module types
    embedding_path: list[tuple[str, nn.Parameter]]  # tables and projections: frozen with freeze_embeddings
    shared_tables: list[tuple[str, nn.Parameter]]  # read by every block (DeBERTa's rel_embeddings)
    always: list[tuple[str, nn.Parameter]]  # head, pooler, biases, LayerNorms

    @classmethod
    def of(cls, model: nn.Module, block_path: str, blocks: nn.ModuleList,
           module_types: Sequence[str] = ("Linear",)) -> "ParameterGroups":
        per_block: list[list[tuple[str, nn.Parameter]]] = [[] for _ in blocks]
        for name, weight in Selection(list(module_types)).select(model, within=[block_path]).items():
            per_block[int(name[len(block_path) + 1:].split(".", 1)[0])].append((name, weight))
        empty = [index for index, weights in enumerate(per_block) if not weights]
        if empty:
            raise ConfigurationError(f"blocks {empty} of {block_path} hold no {', '.join(module_types)} weights: "
                                     "a stage would unfreeze nothing; check mask.module_types / mask.block_path")
        claimed = {id(weight) for weights in per_block for _, weight in weights}
        embedding_names = set(embedding_path(model, block_path))
        tables = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"embedding_path": [], "shared_tables": [], "always": []}
        for name, param in model.named_parameters():
            if id(param) in claimed:
                continue
            group = ("embedding_path" if name in embedding_names else
                     "shared_tables" if id(param) in tables else "always")
            groups[group].append((name, param))
        return cls(per_block, **groups)

    def trainable_names(self, stage: Stage, train_embeddings: bool) -> set[str]:
        names = {name for name, _ in self.always}
        if train_embeddings:
            names |= {name for name, _ in self.embedding_path}
        if len(stage.trainable_blocks) == len(self.block_weights):  # every block trains: so do the tables they share
            names |= {name for name, _ in self.shared_tables}
        for index in stage.trainable_blocks:
            names |= {name for name, _ in self.block_weights[index]}
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
        for weights in self.block_weights:
            yield from weights
        yield from self.embedding_path
        yield from self.shared_tables
        yield from self.always

    def describe(self, plan: StagePlan, train_embeddings: bool) -> dict:
        """The plan as `stage_plan.json` records it: every group's parameters and why it is frozen
        or trains, then per stage which blocks and groups train and what stays frozen."""
        groups = {
            "always": {"parameters": _names(self.always),
                       "trains": "in every stage (head, pooler, biases, LayerNorms)"},
            "embedding_path": {"parameters": _names(self.embedding_path),
                               "trains": "in every stage (freeze_embeddings: false)" if train_embeddings else
                               "never (freeze_embeddings: true: embedding tables and projections)"},
            "shared_tables": {"parameters": _names(self.shared_tables),
                              "trains": "in the stages where every block trains (every block reads them)"},
        }
        stages, first_epoch = [], 0
        for stage in plan.stages:
            names = self.trainable_names(stage, train_embeddings)
            trained = [group for group, members in (("always", self.always), ("embedding_path", self.embedding_path),
                                                    ("shared_tables", self.shared_tables))
                       if members and all(name in names for name, _ in members)]
            stages.append({
                "stage": stage.index, "epochs": stage.epochs, "first_epoch": first_epoch,
                "trainable_blocks": list(stage.trainable_blocks),
                "frozen_blocks": [i for i in range(len(self.block_weights)) if i not in stage.trainable_blocks],
                "trainable_groups": trained,
                "frozen_groups": [group for group in groups if group not in trained and groups[group]["parameters"]],
                "trainable_parameters": sum(p.numel() for n, p in self.named_parameters() if n in names),
            })
            first_epoch += stage.epochs
        return {
            "blocks": {str(i): _names(weights) for i, weights in enumerate(self.block_weights)},
            "groups": groups,
            "stages": stages,
        }


def _names(named: list[tuple[str, nn.Parameter]]) -> list[str]:
    return [name for name, _ in named]


def stage_plan_text(plan: dict) -> str:
    """`stage_plan.json` as a user reads it before training: one line per stage."""
    lines = [f"[sparse-transfer] stage plan of {plan['model']} ({len(plan['blocks'])} blocks at {plan['block_path']}, "
             f"{'/'.join(plan['module_types'])} weights; recipe {plan['recipe']}):"]
    for stage in plan["stages"]:
        blocks = ",".join(map(str, stage["trainable_blocks"])) or "none"
        frozen = ", ".join(stage["frozen_groups"]) or "nothing else"
        first, last = stage["first_epoch"] + 1, stage["first_epoch"] + stage["epochs"]
        lines.append(f"  stage {stage['stage']} (epochs {first}-{last}): "
                     f"blocks [{blocks}] + {', '.join(stage['trainable_groups'])}; frozen: {frozen}; "
                     f"{stage['trainable_parameters']} trainable parameters")
    for group, entry in plan["groups"].items():
        if entry["parameters"]:
            lines.append(f"  {group} ({len(entry['parameters'])} tensors) trains {entry['trains']}")
    if plan["shared_blocks"]:
        lines.append(f"  note: {plan['shared_blocks']}")
    return "\n".join(lines)
