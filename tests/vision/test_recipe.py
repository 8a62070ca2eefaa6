
import pytest

from sparse_transfer.utils.typed_config import RECIPE_DIR
from sparse_transfer.vision.recipe import RecipeError, load_recipe
from sparse_transfer.vision.train import phases_of

RECIPES = sorted((RECIPE_DIR / "vision").glob("*.yaml"))


def test_every_shipped_recipe_loads():
    assert len(RECIPES) >= 10
    for path in RECIPES:
        recipe = load_recipe(path)
        assert recipe.name == path.stem
        if recipe.sparsity.method == "acdc":
            assert phases_of(recipe)[-1].kind == "sparse"


def test_overrides_nested_and_typed(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nepochs: 10\nsparsity: {method: acdc}\n")
    recipe = load_recipe(path, ["sparsity.target=0.95", "optim.lr=1", "scale=2.5", "model.name=resnet18"])
    assert recipe.sparsity.target == 0.95 and recipe.sparsity.method == "acdc"
    assert recipe.optim.lr == 1.0 and isinstance(recipe.optim.lr, float)
    assert recipe.total_epochs == 25 and recipe.model.name == "resnet18"


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sparsity: {targt: 0.9}\n")
    with pytest.raises(RecipeError, match=r"^unknown key 'sparsity.targt' in .*bad.yaml; valid keys: method, target,"):
        load_recipe(path)
    path.write_text("epochs: ten\n")
    with pytest.raises(RecipeError, match="'epochs' in .* must be int"):
        load_recipe(path)
