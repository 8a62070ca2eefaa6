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


def test_inference_records_of_a_cpu_with_amx_are_kept_apart(monkeypatch):
    """The dense runtimes use AMX where the CPU has it, so those records get their own folder."""
    from helpers import load_benchmark

    from sparse_transfer.inference import export

    common = load_benchmark("common")
    for path, amx, folder in [("avx512-vnni", True, "avx512-vnni-amx"), ("avx512-vnni", False, "avx512-vnni"),
                              ("avx2", False, "avx2"), (None, False, "no-native-kernels")]:
        monkeypatch.setattr(export, "machine_description", lambda: {"int8_kernel_path": path, "amx_int8": amx})
        assert common.kernel_path() == folder
