/* y = x @ W^T + bias with W in CSR: the "tiled_csr" kernel of sparse_transfer.inference.
 *
 * Tokens are processed in tiles of TILE: a tile of x is packed transposed (in_features x TILE,
 * contiguous), so every non-zero weight of a row costs TILE/8 vector FMAs on one contiguous,
 * cache-resident stretch, and the accumulators of one output row stay in registers. Results go to
 * an output tile (rows x TILE, whole vector stores), then to y a token row at a time: storing
 * single lanes straight into y's columns cost up to a third of the time. OpenMP splits the work
 * across `threads` threads (by tiles, or by output rows when there are fewer tiles than threads).
 * Portable C (GCC/Clang vector extensions), compiled with -march=native on first use.
 */
#include <stdint.h>
#include <stdlib.h>

#include "kernel_parts.h"

#define TILE 64 /* 8 accumulators of 8 floats: half the AVX2 registers */
typedef float vec8 __attribute__((vector_size(32), aligned(4)));

static void pack_tile(const float *x, int64_t x_row_stride, int64_t in_features, int64_t t0, int64_t count,
                      float *packed) {
  for (int64_t t = 0; t < count; t++)
    for (int64_t j = 0; j < in_features; j++) packed[j * TILE + t] = x[(t0 + t) * x_row_stride + j];
  for (int64_t t = count; t < TILE; t++)  /* pad the last tile: its outputs are not written */
    for (int64_t j = 0; j < in_features; j++) packed[j * TILE + t] = 0.0f;
}

static void rows_of_tile(const int32_t *indptr, const int32_t *columns, const float *values, const float *bias,
                         const float *packed, float *out_tile, int64_t row_begin, int64_t row_end) {
  for (int64_t o = row_begin; o < row_end; o++) {
    float b = bias ? bias[o] : 0.0f;
    vec8 acc[TILE / 8];
    for (int i = 0; i < TILE / 8; i++) acc[i] = (vec8){b, b, b, b, b, b, b, b};
    for (int32_t k = indptr[o]; k < indptr[o + 1]; k++) {
      const vec8 *xs = (const vec8 *)(packed + (int64_t)columns[k] * TILE);
      float w = values[k];
      for (int i = 0; i < TILE / 8; i++) acc[i] += w * xs[i];
    }
    vec8 *slot = (vec8 *)(out_tile + (o - row_begin) * TILE);
    for (int i = 0; i < TILE / 8; i++) slot[i] = acc[i];
  }
}

/* y (tokens x out_features, contiguous); returns 0, or -1 without memory. */
int tiled_csr_linear(const int32_t *indptr, const int32_t *columns, const float *values, const float *bias,
                     const float *x, int64_t x_row_stride, int64_t tokens, int64_t in_features,
                     float *y, int64_t out_features, int64_t threads) {
  int64_t tiles = (tokens + TILE - 1) / TILE;
  int64_t parts = kernel_part_count(tiles, threads);
  int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed) if (threads > 1)
  for (int64_t part = 0; part < parts; part++) {
    kernel_part range = kernel_part_of(part, tiles, out_features, threads);
    int64_t tile_begin = range.tile_begin, tile_end = range.tile_end;
    int64_t row_begin = range.row_begin, row_end = range.row_end;
    float *packed = aligned_alloc(64, (size_t)in_features * TILE * sizeof(float));
    /* + 1 row: never a zero-size allocation */
    float *out_tile = aligned_alloc(64, (size_t)(row_end - row_begin + 1) * TILE * sizeof(float));
    if (!packed || !out_tile) {
      free(packed);
      free(out_tile);
      failed = 1;
      continue;
    }
    for (int64_t tile = tile_begin; tile < tile_end; tile++) {
      int64_t t0 = tile * TILE, count = tokens - t0 < TILE ? tokens - t0 : TILE;
      pack_tile(x, x_row_stride, in_features, t0, count, packed);
      rows_of_tile(indptr, columns, values, bias, packed, out_tile, row_begin, row_end);
      for (int64_t t = 0; t < count; t++) {
        float *y_row = y + (t0 + t) * out_features;
        for (int64_t o = row_begin; o < row_end; o++) y_row[o] = out_tile[(o - row_begin) * TILE + t];
      }
    }
    free(packed);
    free(out_tile);
  }
  return failed ? -1 : 0;
}
