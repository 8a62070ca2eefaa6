"""The `sparse-transfer` command: usage, dispatch, one-line refusals, the recipe list."""

from sparse_transfer.cli import COMMANDS, main


def test_no_command_prints_every_subcommand(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sparse-transfer COMMAND")
    assert all(f"  {name} " in out for name in [*COMMANDS, "recipes"])


def test_an_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["trian"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sparse-transfer: error: unknown command 'trian'; use one of glue, prune, upstream, export, vision, "
        "vision-images, example-data or recipes"]


def test_recipes_lists_the_shipped_recipes_by_workflow(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "transfer: dense_transfer, extended_dense_transfer, gradual_unfreeze, gradual_unfreeze_distill"
    assert lines[1].startswith("upstream: cls_continue, copy_pairs_continue, cosine_continue, magnitude_distill, ")
    assert lines[2].startswith("vision: cifar10_acdc, cifar10_pipeline_vgg16, fashion_mnist_acdc, ")


def test_a_subcommand_gets_the_rest_of_the_command_line(capsys, tmp_path):
    assert main(["prune", "--model", str(tmp_path), "--sparsity", "1.5", "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.splitlines() == ["sparse-transfer prune: error: --sparsity must be in (0, 1), got 1.5"]
    assert not (tmp_path / "o").exists()
