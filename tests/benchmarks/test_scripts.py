"""The benchmark scripts share one module (benchmarks/common.py) and never import each other."""

import ast

from helpers import ROOT


def test_no_script_imports_another_script():
    scripts = {path.stem: path for path in (ROOT / "benchmarks").glob("*.py")}
    assert "common" in scripts
    for name, path in scripts.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):  # top level and inside functions alike
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
        siblings = imported & set(scripts) - {"common"}
        assert not siblings, f"benchmarks/{name}.py imports {sorted(siblings)}: share it through common.py"
        if name == "common":
            assert not imported & set(scripts), "common.py imports a script"
