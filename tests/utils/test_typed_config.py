"""One recipe reader for every workflow: shipped names, `base:`, dotted overrides, one-line errors."""

import pytest

from sparse_transfer.transfer.recipe import load_recipe
from sparse_transfer.upstream.recipe import load_upstream_recipe
from sparse_transfer.utils.typed_config import RECIPE_DIR, RecipeError, parse_overrides, read_sections
from sparse_transfer.vision.recipe import load_recipe as load_vision_recipe


def test_shipped_names_resolve_per_workflow_and_paths_still_work():
    assert load_recipe("extended_dense_transfer").schedule.epochs == 8
    assert load_upstream_recipe("obs_distill_cls").pruning.criterion == "obs"
    assert load_vision_recipe("fashion_mnist_acdc").sparsity.method == "acdc"
    assert load_recipe(RECIPE_DIR / "transfer" / "dense_transfer.yaml").schedule.epochs == 3


def test_one_override_syntax_for_every_workflow():
    assert parse_overrides(["a.b=0.5", "c=[1, 2]", "d=text"]) == {"a.b": 0.5, "c": [1, 2], "d": "text"}
    assert parse_overrides({"pruning.sparsity": 0.8, "pruning.criterion": None}) == {"pruning.sparsity": 0.8}
    assert load_recipe("gradual_unfreeze", ["schedule.epochs_per_stage=2"]).schedule.epochs_per_stage == 2
    recipe = load_upstream_recipe("obs_distill_cls", {"pruning.sparsity": 0.8, "data.max_seq_length": None})
    assert recipe.pruning.sparsity == 0.8 and recipe.data.max_seq_length == 128
    assert load_vision_recipe("fashion_mnist_acdc", {"sparsity.target": 0.95}).sparsity.target == 0.95


def test_base_inheritance_works_for_transfer_recipes_too(tmp_path):
    (tmp_path / "longer.yaml").write_text("base: %s\nschedule: {epochs: 12}\n" % (RECIPE_DIR / "transfer" / "dense_transfer.yaml"))
    recipe = load_recipe(tmp_path / "longer.yaml")
    assert recipe.schedule.kind == "dense" and recipe.schedule.epochs == 12


def test_bad_names_and_overrides_fail_in_one_line_naming_the_fix():
    with pytest.raises(RecipeError, match=r"^recipe obs_distil does not exist; give a YAML path or one of the upstream "
                                          r"recipes: cls_continue, "):
        load_upstream_recipe("obs_distil")
    with pytest.raises(RecipeError, match=r"^override 'sparsity.target' is not key=value"):
        read_sections(None, "vision", ["sparsity.target"])
    with pytest.raises(RecipeError, match="unknown key 'schedule.epoch' in <defaults>; valid keys: kind,"):
        load_recipe(None, ["schedule.epoch=3"])
