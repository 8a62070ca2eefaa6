"""Which weights are prunable: module types plus include/exclude name patterns.

One selection rule serves NLP (Linear weights inside the transformer blocks) and
vision (Conv2d and Linear weights, optionally first and last layer dense).
Biases and normalisation parameters are never selected: only `<module>.weight`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from torch import nn


@dataclass
class Selection:
    """Pick the `.weight` of every module whose class (or a base class) is named in
    `module_types`, whose name matches one of `include` (all when empty) and none of
    `exclude`. Patterns are regular expressions searched in the module name.

    `block_path` names the encoder's stack of transformer blocks (NLP workflows select inside
    it; found automatically when empty, see `encoders.find_blocks`)."""

    module_types: list[str] = field(default_factory=lambda: ["Linear"])
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    block_path: str | None = None

    def select(self, model: nn.Module, within: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
        """Return `{"<module>.weight": parameter}` in model order.

        `within` restricts the search to modules under these name prefixes (for example
        the transformer block stack `bert.encoder.layer`)."""
        include = [re.compile(p) for p in self.include]
        exclude = [re.compile(p) for p in self.exclude]
        selected = {}
        for name, module in model.named_modules():
            if not _is_instance_of_named(module, self.module_types):
                continue
            if within is not None and not any(name == p or name.startswith(p + ".") for p in within):
                continue
            if include and not any(p.search(name) for p in include):
                continue
            if any(p.search(name) for p in exclude):
                continue
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter):
                selected[f"{name}.weight"] = weight
        return selected


def _is_instance_of_named(module: nn.Module, type_names: Iterable[str]) -> bool:
    names = set(type_names)
    return any(cls.__name__ in names for cls in type(module).__mro__)


def resolve_parameter(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Split `"a.b.weight"` into the owning module `a.b` and the attribute `weight`."""
    module_name, _, attr = name.rpartition(".")
    return model.get_submodule(module_name), attr
