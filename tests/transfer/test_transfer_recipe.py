
import pytest

from sparse_transfer.transfer.recipe import RecipeError, load_recipe
from sparse_transfer.transfer.unfreezing import Stage, gradual_unfreeze_plan
from sparse_transfer.utils.typed_config import RECIPE_DIR


def test_shipped_recipes_load_and_plan_the_papers_schedules():
    gradual = load_recipe("gradual_unfreeze")
    plan = gradual.schedule.plan(12)
    assert plan.total_epochs == 14 and len(plan.stages) == 14
    assert plan.stages[0].trainable_blocks == ()
    assert plan.stages[1].trainable_blocks == (11,)
    assert plan.stages[12].trainable_blocks == tuple(range(12))
    assert plan.stages[13] == Stage(13, 1, tuple(range(12)))
    assert [len(s.trainable_blocks) == 12 for s in plan.stages].index(True) == 12  # shared tables train from here
    assert gradual.grid.learning_rate == [1e-4, 2e-4, 3e-4] and gradual.grid.dropout == [0.05, 0.1]
    assert load_recipe(RECIPE_DIR / "transfer" / "dense_transfer.yaml").schedule.plan(12).total_epochs == 3
    assert load_recipe("extended_dense_transfer").schedule.plan(12).total_epochs == 8


def test_epochs_per_stage_and_final_stage_are_configurable():
    plan = gradual_unfreeze_plan(6, epochs_per_stage=2, final_stage_epochs=0)
    assert plan.total_epochs == 14
    assert [plan.stage_at_epoch(e).index for e in range(14)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_partial_unfreezing_stops_after_the_last_u_blocks():
    plan = gradual_unfreeze_plan(6, unfreeze_blocks=2)
    assert [s.trainable_blocks for s in plan.stages] == [(), (5,), (4, 5), (4, 5)]


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schedule:\n  epoch_per_stage: 2\n")
    with pytest.raises(RecipeError, match=rf"unknown key 'schedule.epoch_per_stage' in {path}"):
        load_recipe(path)
    path.write_text("training:\n  warmup_ratio: 0.1\n")
    with pytest.raises(RecipeError, match=r"unknown key 'training.warmup_ratio' .* not a TrainingArguments field"):
        load_recipe(path)
    path.write_text("learning_rate: 1e-4\n")
    with pytest.raises(RecipeError, match="unknown key 'learning_rate'"):
        load_recipe(path)


def test_mistyped_values_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schedule:\n  epochs_per_stage: one\n")
    with pytest.raises(RecipeError, match=r"'schedule.epochs_per_stage' in .* must be int, got 'one'"):
        load_recipe(path)
    path.write_text("schedule:\n  kind: cosine\n")
    with pytest.raises(RecipeError, match="schedule.kind 'cosine'"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


def test_yaml_exponent_without_dot_is_a_float():
    assert load_recipe({"grid": {"learning_rate": ["1e-4"]}, "lr": {"end": 0}}).grid.learning_rate == [1e-4]


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe({"schedule": {"epochs_per_stage": 2}})
    recipe.save(tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml") == recipe
