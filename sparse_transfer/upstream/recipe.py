"""Upstream-pruning recipes: a declarative YAML, validated into typed sections.

    mask:         which weights (the transfer recipes' selection, inside the blocks)
    pruning:      target, criterion (magnitude | obs), scope, cubic schedule in fractions of training
    distillation: weights of the loss terms (see sparse_transfer.distillation)
    data:         how examples are built from the corpus
    training:     TrainingArguments defaults
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparse_transfer.distillation import EMBEDDING_LOSSES, DistillationConfig
from sparse_transfer.pruning import MAX_LAYER_SPARSITY, SCOPES, parse_block
from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.selection import Selection
from sparse_transfer.utils.typed_config import (
    RecipeError,
    YamlRecipe,
    build_section,
    check_training_keys,
    read_sections,
)

CRITERIA = ("magnitude", "obs")
TEACHER_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class OBSConfig:
    block_size: int = 50  # consecutive weights per Fisher block (oBERT: 50)
    num_grads: int = 64  # gradients per Fisher (oBERT: 1024)
    grad_batch_size: int = 8  # examples per gradient
    damping: float = 1.0e-7  # lambda of F = lambda I + ... (oBERT: 1e-7)
    # The Fisher's gradients come from the distillation loss with this share of the student's
    # tokens masked: a student equal to its teacher has zero distillation gradient otherwise.
    mask_probability: float = 0.15


@dataclass
class PruningConfig:
    sparsity: float = 0.9
    initial_sparsity: float = 0.0  # reached in one shot at the first pruning step
    criterion: str = "magnitude"
    scope: str = "global"  # or per-layer (uniform)
    max_layer_sparsity: float = MAX_LAYER_SPARSITY  # global scope: no layer pruned beyond this
    start: float = 0.0  # fraction of the optimizer steps at which pruning starts
    end: float = 0.7  # fraction at which the target is reached; the mask is fixed after
    every: int = 100  # optimizer steps between pruning steps
    block: str = "1x1"  # 1x4: blocks of 4 consecutive input features pruned together (magnitude criterion)
    obs: OBSConfig = field(default_factory=OBSConfig)


@dataclass
class UpstreamDistillation(DistillationConfig):
    hidden: float = 1.0
    embedding: float = 1.0
    student_mask_probability: float = 0.0  # > 0: the student reads [MASK] there, the teacher the real token
    # Dropout of the student while it is pruned (None keeps the model's): attention maps and
    # hidden states after dropout never match the teacher's, even for identical weights.
    student_dropout: float | None = 0.0
    teacher_dtype: str = "float32"


@dataclass
class DataConfig:
    max_seq_length: int = 128
    pair_fraction: float = 0.5  # examples made of two segments [CLS] a [SEP] b [SEP]
    random_pair_fraction: float = 0.5  # of those, second segment from a random place instead of the next line
    copy_pair_fraction: float = 0.0  # of the pairs, a line and a copy of it with 30% of its words dropped
    text_column: str = "text"  # for CSV / JSON / datasets corpora
    seed: int = 0


@dataclass
class UpstreamRecipe(YamlRecipe):
    name: str = "upstream"
    description: str = ""
    mask: Selection = field(default_factory=Selection)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    distillation: UpstreamDistillation = field(default_factory=UpstreamDistillation)
    data: DataConfig = field(default_factory=DataConfig)
    training: dict = field(default_factory=dict)


def load_upstream_recipe(source: str | Path | dict | UpstreamRecipe | None = None,
                         overrides=None) -> UpstreamRecipe:
    """From a YAML path, the name of a shipped upstream recipe (`obs_distill_cls`, ...), a
    dict, or the defaults; `overrides` as `read_sections` takes them (`{"pruning.sparsity": 0.8}`)."""
    if isinstance(source, UpstreamRecipe):
        source = source.to_dict()
    values, where = read_sections(source, "upstream", overrides)
    recipe = build_section(UpstreamRecipe, values, where)
    check(recipe, where)
    return recipe


def check(recipe: UpstreamRecipe, where: str) -> None:
    pruning, distillation, data = recipe.pruning, recipe.distillation, recipe.data

    def fail(message: str):
        raise RecipeError(f"{message} in {where}")

    if not 0.0 < pruning.sparsity < 1.0:
        fail(f"pruning.sparsity must be in (0, 1), got {pruning.sparsity}")
    if not 0.0 <= pruning.initial_sparsity <= pruning.sparsity:
        fail(f"pruning.initial_sparsity must be in [0, sparsity={pruning.sparsity}], got {pruning.initial_sparsity}")
    if not pruning.sparsity <= pruning.max_layer_sparsity < 1.0:
        fail(f"pruning.max_layer_sparsity must be in [pruning.sparsity, 1), got {pruning.max_layer_sparsity}")
    if pruning.criterion not in CRITERIA:
        fail(f"pruning.criterion {pruning.criterion!r} is unknown; use one of {CRITERIA}")
    if pruning.scope not in SCOPES:
        fail(f"pruning.scope {pruning.scope!r} is unknown; use one of {SCOPES}")
    if not 0.0 <= pruning.start <= pruning.end <= 1.0:
        fail(f"need 0 <= pruning.start <= pruning.end <= 1, got start {pruning.start}, end {pruning.end}")
    if pruning.every < 1:
        fail(f"pruning.every must be >= 1 optimizer step, got {pruning.every}")
    try:
        block = parse_block(pruning.block)
    except ConfigurationError as error:
        fail(f"pruning.block: {error}")
    if block > 1 and pruning.criterion != "magnitude":
        fail(f"pruning.block {pruning.block} needs criterion magnitude (block oBS is not implemented); set "
             "pruning.criterion: magnitude or pruning.block: 1x1")
    obs = pruning.obs
    if obs.block_size < 1 or obs.num_grads < 1 or obs.grad_batch_size < 1 or obs.damping <= 0:
        fail("pruning.obs needs block_size, num_grads, grad_batch_size >= 1 and damping > 0")
    if not 0.0 <= obs.mask_probability < 1.0:
        fail(f"pruning.obs.mask_probability must be in [0, 1), got {obs.mask_probability}")
    weights = distillation.weights()
    if any(w < 0 for w in weights.values()):
        fail(f"loss term weights must be >= 0, got {weights}")
    if not any(weights.values()):
        fail("every distillation term has weight 0; give logits, hidden, attention, embedding or cls a weight")
    if distillation.embedding_loss not in EMBEDDING_LOSSES:
        fail(f"distillation.embedding_loss {distillation.embedding_loss!r} is unknown; use one of {EMBEDDING_LOSSES}")
    if not 0.0 <= distillation.hardness <= 1.0:
        fail(f"distillation.hardness must be in [0, 1], got {distillation.hardness}")
    if not 0.0 <= distillation.student_mask_probability < 1.0:
        fail(f"distillation.student_mask_probability must be in [0, 1), got {distillation.student_mask_probability}")
    if distillation.logits and distillation.hardness < 1 and not distillation.student_mask_probability:
        fail("the student's own MLM loss (distillation.hardness < 1) needs masked tokens: set "
             "distillation.student_mask_probability > 0 (BERT: 0.15)")
    if distillation.attention and distillation.student_dropout != 0.0:
        fail("distillation.attention compares attention maps, which dropout perturbs: set distillation.student_dropout "
             "to 0 or the attention weight to 0")
    if distillation.teacher_dtype not in TEACHER_DTYPES:
        fail(f"distillation.teacher_dtype {distillation.teacher_dtype!r} is unknown; use one of {TEACHER_DTYPES}")
    if not all(0.0 <= f <= 1.0 for f in (data.pair_fraction, data.random_pair_fraction, data.copy_pair_fraction)):
        fail("data.pair_fraction, data.random_pair_fraction and data.copy_pair_fraction must be in [0, 1]")
    check_training_keys(recipe.training, where)
