"""The toolkit's C kernels (`tiled_csr`: FP32 CSR; `sparse_int8`: INT8 1x4-block CSR with AVX-512
VNNI or AVX2 where the CPU has them; `bf16_attention`: attention with bfloat16 dot products where
the CPU has them, on AMX tiles where it has those too): compiled on first use with the machine's C
compiler, cached, called through ctypes. Each call splits its work across threads in C (OpenMP,
torch's thread count); the GIL is released during the call.

The library is built with `-march=native` (the vector width and integer dot-product instructions of
this CPU), so the cache key holds the CPU's identity as well as the sources and the flags; a machine
without a compiler simply has no native kernel (calibration skips them, a saved plan falls back to
its next best kernel). Without OpenMP (a compiler that lacks it) the kernels run on one thread.
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
from dataclasses import dataclass
from pathlib import Path

import torch

SOURCES = [Path(__file__).with_name(name) for name in ("tiled_csr.c", "sparse_int8.c", "attention.c")]
HEADERS = [Path(__file__).with_name(name) for name in ("kernel_parts.h", "vector_math.h")]
FLAGS = ["-O3", "-march=native", "-std=gnu11", "-shared", "-fPIC"]
OPENMP = ["-fopenmp"]  # torch's own libgomp (the same soname) serves the kernels when torch loaded it


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
KEPT_MEMORY = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc serve large blocks from its heap and keep freed memory, process-wide: inference
    allocates the same large activations every forward, and fresh mmap'd ones cost a page fault per
    4 KiB (a 50 MB activation: 20 ms, more than the sparse matmul that fills it). The price is a
    process that keeps its peak memory. False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, KEPT_MEMORY)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_MEMORY))
    except (OSError, AttributeError):
        return False


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


@dataclass(frozen=True)
class QuantizedActivation:
    """An activation as the INT8 kernel quantizes its input, per token: x ~ scales[t] * (values[t] - zeros[t]);
    one INT8 layer hands it to the next instead of float32 (a quarter of the memory traffic)."""

    values: torch.Tensor  # (tokens, features) uint8
    scales: torch.Tensor  # (tokens,) float32
    zeros: torch.Tensor  # (tokens,) int32
    shape: torch.Size  # of the float activation it stands for

    def dequantize(self) -> torch.Tensor:
        return ((self.values.float() - self.zeros[:, None]) * self.scales[:, None]).reshape(self.shape)


class _Options(ctypes.Structure):
    """sparse_int8_options of sparse_int8.c, field for field."""

    _fields_ = [("x_q", ctypes.c_void_p), ("x_scales", ctypes.c_void_p), ("x_zeros", ctypes.c_void_p),
                ("residual", ctypes.c_void_p), ("residual_stride", ctypes.c_int64), ("norm_weight", ctypes.c_void_p),
                ("norm_bias", ctypes.c_void_p), ("norm_eps", ctypes.c_float), ("y_q", ctypes.c_void_p),
                ("y_scales", ctypes.c_void_p), ("y_zeros", ctypes.c_void_p)]


class NativeKernels:
    """The loaded library. Every call runs on torch.get_num_threads() threads (split in C)."""

    def __init__(self, path: Path, openmp: bool):
        library = ctypes.CDLL(str(path))
        pointer, integer = ctypes.c_void_p, ctypes.c_int64
        self._tiled_csr = library.tiled_csr_linear
        self._tiled_csr.restype = ctypes.c_int
        self._tiled_csr.argtypes = [pointer] * 5 + [integer] * 3 + [pointer] + [integer] * 2
        self._sparse_int8 = library.sparse_int8_linear
        self._sparse_int8.restype = ctypes.c_int
        self._sparse_int8.argtypes = [pointer] * 7 + [integer] * 3 + [pointer] * 2 + [integer] * 2 + [
            ctypes.POINTER(_Options), integer]
        self._quantize_rows = library.sparse_int8_quantize_rows
        self._quantize_rows.restype = None
        self._quantize_rows.argtypes = [pointer] + [integer] * 3 + [pointer] * 3
        self._attention = library.bf16_attention
        self._attention.restype = ctypes.c_int
        self._attention.argtypes = [pointer] * 4 + [integer] * 5 + [pointer] * 4 + [ctypes.c_float, pointer, integer]
        library.sparse_int8_path.restype = ctypes.c_char_p
        self.int8_path = library.sparse_int8_path().decode()  # "avx512-vnni", "avx2" or "portable"
        self.has_vnni = self.int8_path == "avx512-vnni"
        self.pair_limit = int(library.sparse_int8_pair_limit())  # what Int8BlockWeight.of must split for; 0: none
        self.has_bf16 = bool(library.bf16_attention_available())
        library.bf16_attention_path.restype = ctypes.c_char_p
        self.attention_path = library.bf16_attention_path().decode()  # "amx-bf16", "avx512-bf16" or "none"
        self.openmp = openmp

    def threads(self) -> int:
        return max(1, torch.get_num_threads()) if self.openmp else 1

    def tiled_csr(self, indptr, columns, values, bias, x: torch.Tensor, out_features: int) -> torch.Tensor:
        """x (tokens, in) with unit column stride -> x @ W^T + bias, (tokens, out)."""
        tokens, in_features = x.shape
        y = torch.empty(tokens, out_features, dtype=torch.float32)
        status = self._tiled_csr(indptr.data_ptr(), columns.data_ptr(), values.data_ptr(),
                                 bias.data_ptr() if bias is not None else None, x.data_ptr(), x.stride(0), tokens,
                                 in_features, y.data_ptr(), out_features, self.threads())
        if status:
            raise MemoryError("tiled_csr: no memory for a packed tile")
        return y

    def sparse_int8(self, weight, bias, x: torch.Tensor | QuantizedActivation, sums: torch.Tensor | None = None,
                    gelu: bool = False, residual: torch.Tensor | None = None, norm: torch.nn.LayerNorm | None = None,
                    quantize_output: bool = False) -> torch.Tensor | QuantizedActivation:
        """With `weight` a kernels.Int8BlockWeight: x (tokens, in) float32 with unit column stride, or
        already quantized -> dequantized x_q @ W_q^T + bias (its GELU with `gelu`, computed in the
        kernel); `sums` (tokens, out) int32, if given, receives the exact integer sums (before the
        zero-point term). With `residual` (tokens, out; unit column stride) and `norm` (a LayerNorm
        over out features, with weight and bias): norm(y + residual). With `quantize_output`: y
        quantized per token as the next INT8 layer would (a QuantizedActivation)."""
        if self.pair_limit and not 0 < weight.pair_limit <= self.pair_limit:
            raise ValueError(f"sparse_int8: this build ({self.int8_path}) multiplies weight pairs exactly only up to "
                             f"|w_a + w_b| = {self.pair_limit}; make the weight with "
                             f"Int8BlockWeight.of(weight, pair_limit={self.pair_limit})")
        quantized_input = isinstance(x, QuantizedActivation)
        tokens, in_features = x.values.shape if quantized_input else x.shape
        out_features = weight.indptr.numel() - 1
        y = torch.empty(tokens, out_features, dtype=torch.float32)
        options = _Options()
        if quantized_input:
            options.x_q, options.x_scales, options.x_zeros = (t.data_ptr() for t in (x.values, x.scales, x.zeros))
        if residual is not None:
            options.residual, options.residual_stride = residual.data_ptr(), residual.stride(0)
            options.norm_weight, options.norm_bias = norm.weight.data_ptr(), norm.bias.data_ptr()
            options.norm_eps = norm.eps
        if quantize_output:
            output = QuantizedActivation(torch.empty(tokens, out_features, dtype=torch.uint8),
                                         torch.empty(tokens, dtype=torch.float32),
                                         torch.empty(tokens, dtype=torch.int32), torch.Size((tokens, out_features)))
            options.y_q, options.y_scales, options.y_zeros = (
                output.values.data_ptr(), output.scales.data_ptr(), output.zeros.data_ptr())
        status = self._sparse_int8(weight.indptr.data_ptr(), weight.columns.data_ptr(), weight.values.data_ptr(),
                                   weight.row_sums.data_ptr(), weight.scales.data_ptr(),
                                   bias.data_ptr() if bias is not None else None,
                                   None if quantized_input else x.data_ptr(), 0 if quantized_input else x.stride(0),
                                   tokens, in_features, y.data_ptr(), sums.data_ptr() if sums is not None else None,
                                   out_features, int(gelu), ctypes.byref(options), self.threads())
        if status:
            raise MemoryError("sparse_int8: no memory for a packed tile")
        return output if quantize_output else y

    def bf16_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                       scale: float) -> torch.Tensor:
        """softmax(scale * query @ key^T, masked) @ value with bf16 dot products and fp32 sums.
        query (batch, heads, queries, dim), key and value (batch, heads, keys, dim): float32 on CPU,
        any strides but a unit one along dim (dim a multiple of 32); mask: bool, broadcastable to
        (batch, heads, queries, keys), True = attend, or None. Returns (batch, queries, heads, dim)."""
        batch, heads, queries, dim = query.shape
        keys = key.shape[2]
        out = torch.empty(batch, queries, heads, dim, dtype=torch.float32)
        if mask is not None:
            mask = mask.expand(batch, heads, queries, keys)
            if mask.stride(-1) != 1:
                mask = mask.contiguous()
        strides = [(ctypes.c_int64 * 3)(*tensor.stride()[:3]) for tensor in (query, key, value)]
        mask_strides = (ctypes.c_int64 * 3)(*(mask.stride()[:3] if mask is not None else (0, 0, 0)))
        status = self._attention(query.data_ptr(), key.data_ptr(), value.data_ptr(),
                                 mask.data_ptr() if mask is not None else None, batch, heads, queries, keys, dim,
                                 *strides, mask_strides, scale, out.data_ptr(), self.threads())
        if status:
            raise MemoryError("bf16_attention: no memory for packed heads") if status == -1 else RuntimeError(
                "bf16_attention: this build has no bf16 dot products")
        return out

    def quantize_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The kernel's per-token UINT8 quantization of x (tokens, in): x_q, scales, zero points."""
        tokens, features = x.shape
        x_q = torch.empty(tokens, features, dtype=torch.uint8)
        scales, zeros = torch.empty(tokens, dtype=torch.float32), torch.empty(tokens, dtype=torch.int32)
        self._quantize_rows(x.data_ptr(), x.stride(0), tokens, features, x_q.data_ptr(), scales.data_ptr(),
                            zeros.data_ptr())
        return x_q, scales, zeros


@functools.cache
def load_native() -> NativeKernels | str:
    """The library, compiling it if this machine has not yet; or why it is unavailable."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return "no C compiler (cc, gcc or clang) found; set CC"
    source_bytes = b"\0".join(source.read_bytes() for source in [*SOURCES, *HEADERS])
    key = hashlib.sha256(b"\0".join([source_bytes, " ".join([compiler, *FLAGS, *OPENMP]).encode(),
                                      _cpu_identity().encode()]))
    library = cache_dir() / f"sparse_kernels-{key.hexdigest()[:16]}.so"
    marker = library.with_suffix(".serial")  # compiled without OpenMP: this compiler lacks it
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        # Compile to a temporary name and rename: concurrent first uses never load half a file.
        fd, partial = tempfile.mkstemp(suffix=".so", dir=library.parent)
        os.close(fd)
        sources = [str(source) for source in SOURCES]
        result = subprocess.run([compiler, *FLAGS, *OPENMP, *sources, "-o", partial], capture_output=True, text=True)
        if result.returncode != 0:
            result = subprocess.run([compiler, *FLAGS, *sources, "-o", partial], capture_output=True, text=True)
            if result.returncode == 0:
                marker.touch()
        if result.returncode != 0:
            os.unlink(partial)
            first_line = (result.stderr.strip().splitlines() or ["unknown error"])[0]
            return f"compiling the native kernels with {compiler} failed: {first_line}"
        os.replace(partial, library)
    try:
        return NativeKernels(library, openmp=not marker.exists())
    except OSError as error:
        return f"loading {library} failed: {error}"
