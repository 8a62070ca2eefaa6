"""The `tiled_csr` C kernel: compiled on first use with the machine's C compiler, cached, called
through ctypes.

The library is built with `-march=native` (the vector width of this CPU), so the cache key holds
the CPU's identity as well as the source and the flags; a machine without a compiler simply has no
`tiled_csr` kernel (calibration skips it, a saved plan falls back to its next best kernel).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("tiled_csr.c")
FLAGS = ["-O3", "-march=native", "-std=gnu11", "-shared", "-fPIC"]


def cache_dir() -> Path:
    """`$SPARSE_TRANSFER_CACHE`, else `$XDG_CACHE_HOME/sparse_transfer` (default ~/.cache)."""
    if os.environ.get("SPARSE_TRANSFER_CACHE"):
        return Path(os.environ["SPARSE_TRANSFER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparse_transfer"


def _cpu_identity() -> str:
    identity = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        identity += [next((line for line in lines if line.startswith(key)), "") for key in ("model name", "flags")]
    except OSError:
        pass
    return "\n".join(identity)


class TiledCSR:
    """The loaded library; `linear` runs it on torch.get_num_threads() threads."""

    def __init__(self, path: Path):
        self._function = ctypes.CDLL(str(path)).tiled_csr_linear
        self._function.restype = ctypes.c_int
        pointer, integer = ctypes.c_void_p, ctypes.c_int64
        self._function.argtypes = [pointer] * 5 + [integer] * 3 + [pointer] + [integer] * 3
        self._pool: ThreadPoolExecutor | None = None
        self._pool_workers = 0

    def linear(self, indptr, columns, values, bias, x: torch.Tensor, out_features: int) -> torch.Tensor:
        """x (tokens, in) with unit column stride -> x @ W^T + bias, (tokens, out)."""
        tokens, in_features = x.shape
        y = torch.empty(tokens, out_features, dtype=torch.float32)
        bias_pointer = bias.data_ptr() if bias is not None else None

        def run(part: int, parts: int) -> int:
            # ctypes releases the GIL during the call: parts run truly in parallel.
            return self._function(indptr.data_ptr(), columns.data_ptr(), values.data_ptr(), bias_pointer,
                                  x.data_ptr(), x.stride(0), tokens, in_features, y.data_ptr(), out_features,
                                  part, parts)

        parts = max(1, torch.get_num_threads())
        if parts == 1:
            statuses = [run(0, 1)]
        else:
            pool = self._thread_pool(parts - 1)
            others = [pool.submit(run, part, parts) for part in range(1, parts)]
            statuses = [run(0, parts)] + [future.result() for future in others]
        if any(statuses):
            raise MemoryError("tiled_csr: no memory for a packed tile")
        return y

    def _thread_pool(self, workers: int) -> ThreadPoolExecutor:
        if self._pool_workers < workers:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="tiled_csr")
            self._pool_workers = workers
        return self._pool


@functools.cache
def load_tiled_csr() -> TiledCSR | str:
    """The library, compiling it if this machine has not yet; or why it is unavailable."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return "no C compiler (cc, gcc or clang) found; set CC"
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join([compiler, *FLAGS]).encode(), _cpu_identity().encode()]))
    library = cache_dir() / f"tiled_csr-{key.hexdigest()[:16]}.so"
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        # Compile to a temporary name and rename: concurrent first uses never load half a file.
        fd, partial = tempfile.mkstemp(suffix=".so", dir=library.parent)
        os.close(fd)
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", partial], capture_output=True, text=True)
        if result.returncode != 0:
            os.unlink(partial)
            first_line = (result.stderr.strip().splitlines() or ["unknown error"])[0]
            return f"compiling {SOURCE.name} with {compiler} failed: {first_line}"
        os.replace(partial, library)
    try:
        return TiledCSR(library)
    except OSError as error:
        return f"loading {library} failed: {error}"
