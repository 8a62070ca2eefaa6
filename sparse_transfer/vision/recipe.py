"""Vision recipes: the sections of a training run (model, data, optimizer, resizing,
sparsity method, pipeline), read as every recipe is (`sparse_transfer.utils.typed_config`:
shipped names, `base:` inheritance, dotted `key=value` overrides, typed sections)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparse_transfer.utils.typed_config import (
    RecipeError,
    YamlRecipe,
    build_section,
    read_sections,
)
from sparse_transfer.vision.pipeline.learnable_masks import ESTIMATORS


@dataclass
class ModelConfig:
    name: str = "cifar_resnet20"  # a built-in name, torchvision:<name>, timm:<name> or package.module:factory
    width: int = 1  # built-in models only
    weights: str = ""  # start from this file: .safetensors, or a torch state dict read with weights_only=True
    kwargs: dict = field(default_factory=dict)  # passed to torchvision / timm / the factory (img_size: 32, ...)


@dataclass
class DataConfig:
    dataset: str = "fashion_mnist"
    root: str = ""  # empty: the dataset's default directory
    train_subset: int = 0  # first N samples; 0 = all
    val_subset: int = 0
    batch_size: int = 128  # per process
    workers: int = 0
    download: bool = False  # CIFAR through torchvision
    train_size: int = 224  # ImageNet random-resized-crop size before progressive resizing
    # own images (dataset imagefolder or hf, vision/datasets.py); 0 / empty = computed from the data
    train_split: str = "train"  # imagefolder: sub-folder of root (absent: root holds the classes); hf: split
    val_split: str = ""  # "" = "val" (imagefolder) or "validation" (hf)
    val_fraction: float = 0.0  # > 0: hold out this seeded fraction of the training images (no val split)
    image_column: str = "image"  # hf
    label_column: str = "label"  # hf: a ClassLabel, or any values (sorted into classes)
    image_size: int = 0  # 0: the median shorter side of the statistics sample
    channels: int = 0  # 0: from the images (1 grey, 3 colour; a mix is an error); 1 or 3 converts every image
    mean: list[float] = field(default_factory=list)  # per channel; empty: computed on the statistics sample
    std: list[float] = field(default_factory=list)
    augment: str = "flip"  # none, flip, crop_flip (random crop with size/8 padding, then flip)
    stats_samples: int = 1000  # training images drawn (seeded) for the size, mean and std; 0 = all


@dataclass
class OptimConfig:
    lr: float = 0.1  # peak LR at `reference_batch`; scaled linearly with the global batch
    reference_batch: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4  # not on BatchNorm and biases
    label_smoothing: float = 0.1
    warmup_epochs: float = 2.0  # linear warm-up to the peak, then linear decay to 0


@dataclass
class ResizeConfig:
    """Progressive resizing of training batches (0 = off): `low` until `ramp_start`,
    then linearly to `high` at `ramp_end` (fractions of the run), in steps of `step`."""

    low: int = 0
    high: int = 0
    ramp_start: float = 0.0
    ramp_end: float = 0.8
    step: int = 32


@dataclass
class SparsityConfig:
    method: str = "dense"  # dense, acdc, gmp, rigl, pipeline
    target: float = 0.9
    distribution: str = "global"  # global, uniform, erk, 2:4, block4
    first_last_dense: bool = False
    # AC/DC: phases of the base schedule (stretched by the recipe's `scale`)
    warmup_fraction: float = 0.1
    phase_length: int = 5
    final_dense: int = 10
    final_sparse: int = 15
    decompression_sparsity: float = 0.0
    ramp_from: float = 0.0  # > 0: sparse phases ramp from this sparsity up to the target
    reset_momentum: bool = True
    # GMP and RigL
    fixed_fraction: float = 0.25
    prune_every: int = 5
    alpha: float = 0.3
    update_every: int = 1


@dataclass
class PipelineConfig:
    """The end-to-end pruning pipeline (`sparsity.method: pipeline`, pipeline.py)."""

    pre_pruning_epochs: int = 10  # stage 1; stage 3 trains the rest of the run's epochs
    zero_init: bool = True
    learned_mask: bool = True
    estimator: str = "straight_through"  # or concrete (relaxed Bernoulli)
    temperature: float = 0.5  # of the concrete estimator
    mask_init: float = 0.9  # initial keep probability
    mask_lr: float = 0.05  # Adam on the mask logits
    density_weight: float = 1.0  # (expected density - target density)^2
    polarization_weight: float = 0.1  # mean p(1 - p): pushes probabilities to 0 or 1
    label_smoothing: float = 0.1  # stage 3, annealed to 0 (0 = off); stage 1 uses optim.label_smoothing
    soft_activation: bool = True  # stage 3: Swish annealed to ReLU
    skip_weight: float = 0.5  # stage 3: identity paths annealed to 0 (0 = off)

    def check(self, epochs: int) -> None:
        """One-line errors for settings the pipeline cannot run in `epochs` epochs."""
        if not 0 <= self.pre_pruning_epochs < epochs:
            raise RecipeError(
                f"pipeline.pre_pruning_epochs={self.pre_pruning_epochs} leaves no post-pruning epoch of the run's "
                f"{epochs}; set it between 0 and {epochs - 1}"
            )
        if self.estimator not in ESTIMATORS:
            raise RecipeError(f"unknown pipeline.estimator {self.estimator!r}; use one of {ESTIMATORS}")


@dataclass
class TransferConfig:
    """Sparse transfer (`kind: transfer`, transfer.py): start from `model.weights`, a new classifier."""

    mode: str = "linear"  # linear: only the new classifier trains; full: every weight, the mask fixed
    sparse: bool = True  # the checkpoint must have zeros in its prunable layers; they stay exactly zero

    def check(self, model: ModelConfig, sparsity: SparsityConfig) -> None:
        if self.mode not in TRANSFER_MODES:
            raise RecipeError(f"unknown transfer.mode {self.mode!r}; use one of {', '.join(TRANSFER_MODES)}")
        if not model.weights:
            raise RecipeError("kind: transfer needs model.weights, the checkpoint to transfer from")
        if sparsity.method != "dense":
            raise RecipeError(f"kind: transfer keeps the checkpoint's mask; sparsity.method must stay dense, not "
                              f"{sparsity.method!r}")


TRANSFER_MODES = ("linear", "full")


@dataclass
class VisionRecipe(YamlRecipe):
    name: str = "run"
    kind: str = "train"  # train (from scratch or model.weights) or transfer (train.py's KINDS)
    epochs: int = 100  # of the base schedule; the run trains round(epochs * scale)
    scale: float = 1.0  # AC/DC++: 1x, 2.5x, 5x, 10x
    seed: int = 0
    output_dir: str = ""  # empty: runs/<name>
    mixed_precision: str = "no"  # no, fp16, bf16 (accelerate)
    epochs_per_job: int = 0  # stop after this many epochs (job time limits); --resume goes on
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)

    @property
    def total_epochs(self) -> int:
        return round(self.epochs * self.scale)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.name)


def load_recipe(source: str | Path | dict, overrides=()) -> VisionRecipe:
    """From a YAML path, the name of a shipped vision recipe (`fashion_mnist_acdc`, ...) or a
    dict; `overrides` as `read_sections` takes them (`["sparsity.target=0.95"]`)."""
    values, where = read_sections(source, "vision", overrides)
    recipe = build_section(VisionRecipe, values, where)
    if recipe.sparsity.method == "pipeline":
        recipe.pipeline.check(recipe.total_epochs)
        if recipe.model.weights:
            raise RecipeError("sparsity.method=pipeline trains from its own initialization; remove model.weights")
    if recipe.kind == "transfer":
        recipe.transfer.check(recipe.model, recipe.sparsity)
    return recipe
