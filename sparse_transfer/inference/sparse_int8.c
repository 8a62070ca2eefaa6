/* y = dequantize(quantize(x) @ W_q^T) + bias with W_q INT8 in 1x4-block CSR: the "sparse_int8" kernel.
 *
 * Weights: per output channel symmetric INT8 (w = w_scale[o] * w_q); every row keeps the 1x4 blocks
 * (4 consecutive input features) that hold a non-zero, as one int32 of 4 bytes, with the block's
 * column (input feature / 4). Activations: per token asymmetric UINT8 (x = x_scale[t] * (x_q - x_zero[t])),
 * quantized while a tile of TILE tokens is packed as [feature / 4][token][4 bytes], so that one
 * block of a row meets the same 4 features of every token of the tile in one vector.
 *
 * With AVX-512 VNNI one vpdpbusd multiplies 16 tokens x 4 features (u8 x s8, exact int32 sums);
 * without it a portable loop computes the same int32 sums. Accumulators are exact: the output is
 * x_scale[t] * w_scale[o] * (acc - x_zero[t] * row_sum[o]) + bias[o].
 * Threads: OpenMP splits tiles (or output rows when there are fewer tiles than threads).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#include <immintrin.h>
#define SPARSE_INT8_VNNI 1
#else
#define SPARSE_INT8_VNNI 0
#endif

#define TILE 64 /* tokens per tile: 4 AVX-512 vectors of 16 int32 accumulators */
#define ROWS 16 /* output rows finished together, then written to y a token at a time */

int sparse_int8_has_vnni(void) { return SPARSE_INT8_VNNI; }

/* Per-token UINT8 quantization of one row of `features` floats: the range always holds 0
 * (so that 0 is exact), scale = range / 255, zero = round(-min / scale). */
static void token_params(const float *row, int64_t features, float *scale, int32_t *zero) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t k = 0; k < features; k++) {
    lo = row[k] < lo ? row[k] : lo;
    hi = row[k] > hi ? row[k] : hi;
  }
  float s = (hi - lo) / 255.0f;
  if (s == 0.0f) s = 1.0f;
  int32_t z = (int32_t)nearbyintf(-lo / s);
  *scale = s;
  *zero = z < 0 ? 0 : (z > 255 ? 255 : z);
}

static inline uint8_t quantize_value(float value, float scale, int32_t zero) {
  int32_t q = (int32_t)nearbyintf(value / scale) + zero;
  return (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
}

/* x (tokens x features, row stride) -> x_q (tokens x features) and per-token scale and zero: the
 * same arithmetic as the kernel's packing, for tests and references. */
void sparse_int8_quantize_rows(const float *x, int64_t x_row_stride, int64_t tokens, int64_t features,
                               uint8_t *x_q, float *scales, int32_t *zeros) {
  for (int64_t t = 0; t < tokens; t++) {
    const float *row = x + t * x_row_stride;
    token_params(row, features, &scales[t], &zeros[t]);
    for (int64_t k = 0; k < features; k++) x_q[t * features + k] = quantize_value(row[k], scales[t], zeros[t]);
  }
}

/* Quantize and pack tokens t0 .. t0 + count - 1 as [features / 4][TILE][4]; padding holds each
 * token's zero point (the value 0), and padded tokens hold 0. */
static void pack_tile(const float *x, int64_t x_row_stride, int64_t features, int64_t blocks, int64_t t0,
                      int64_t count, uint8_t *packed, float *scales, int32_t *zeros) {
  for (int64_t t = 0; t < TILE; t++) {
    if (t >= count) {
      for (int64_t b = 0; b < blocks; b++) memset(packed + (b * TILE + t) * 4, 0, 4);
      scales[t] = 1.0f;
      zeros[t] = 0;
      continue;
    }
    const float *row = x + (t0 + t) * x_row_stride;
    token_params(row, features, &scales[t], &zeros[t]);
    for (int64_t k = 0; k < blocks * 4; k++) {
      uint8_t q = k < features ? quantize_value(row[k], scales[t], zeros[t]) : (uint8_t)zeros[t];
      packed[((k >> 2) * TILE + t) * 4 + (k & 3)] = q;
    }
  }
}

/* The int32 sums of one output row over one packed tile. */
static inline void row_sums_of_tile(const int32_t *indptr, const int32_t *columns, const int32_t *values,
                                    const uint8_t *packed, int64_t o, int32_t *acc) {
#if SPARSE_INT8_VNNI
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int32_t k = indptr[o]; k < indptr[o + 1]; k++) {
    const __m512i *xs = (const __m512i *)(packed + (int64_t)columns[k] * TILE * 4);
    __m512i w = _mm512_set1_epi32(values[k]);
    a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(xs), w);
    a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(xs + 1), w);
    a2 = _mm512_dpbusd_epi32(a2, _mm512_load_si512(xs + 2), w);
    a3 = _mm512_dpbusd_epi32(a3, _mm512_load_si512(xs + 3), w);
  }
  _mm512_storeu_si512(acc, a0);
  _mm512_storeu_si512(acc + 16, a1);
  _mm512_storeu_si512(acc + 32, a2);
  _mm512_storeu_si512(acc + 48, a3);
#else
  for (int t = 0; t < TILE; t++) acc[t] = 0;
  for (int32_t k = indptr[o]; k < indptr[o + 1]; k++) {
    const uint8_t *xs = packed + (int64_t)columns[k] * TILE * 4;
    int32_t block = values[k];
    int32_t w0 = (int8_t)(block & 0xff), w1 = (int8_t)((block >> 8) & 0xff);
    int32_t w2 = (int8_t)((block >> 16) & 0xff), w3 = (int8_t)((block >> 24) & 0xff);
    for (int t = 0; t < TILE; t++)
      acc[t] += xs[4 * t] * w0 + xs[4 * t + 1] * w1 + xs[4 * t + 2] * w2 + xs[4 * t + 3] * w3;
  }
#endif
}

/* y (tokens x out_features) from x; `sums` (tokens x out_features int32, may be NULL) receives the
 * exact integer sums. Returns 0, or -1 without memory. */
int sparse_int8_linear(const int32_t *indptr, const int32_t *columns, const int32_t *values, const int32_t *row_sums,
                       const float *w_scales, const float *bias, const float *x, int64_t x_row_stride,
                       int64_t tokens, int64_t in_features, float *y, int32_t *sums, int64_t out_features,
                       int64_t threads) {
  int64_t tiles = (tokens + TILE - 1) / TILE, blocks = (in_features + 3) / 4;
  int by_rows = tiles < threads;
  int64_t parts = by_rows ? threads : tiles;
  int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed) if (threads > 1)
  for (int64_t part = 0; part < parts; part++) {
    int64_t tile_begin = by_rows ? 0 : part, tile_end = by_rows ? tiles : part + 1;
    int64_t row_begin = by_rows ? part * out_features / parts : 0;
    int64_t row_end = by_rows ? (part + 1) * out_features / parts : out_features;
    uint8_t *packed = aligned_alloc(64, (size_t)(blocks * TILE * 4 + 64));
    if (!packed) { failed = 1; continue; }
    float scales[TILE], out[ROWS][TILE];
    int32_t zeros[TILE], acc[TILE];
    for (int64_t tile = tile_begin; tile < tile_end; tile++) {
      int64_t t0 = tile * TILE, count = tokens - t0 < TILE ? tokens - t0 : TILE;
      pack_tile(x, x_row_stride, in_features, blocks, t0, count, packed, scales, zeros);
      for (int64_t r0 = row_begin; r0 < row_end; r0 += ROWS) {
        int64_t rows = row_end - r0 < ROWS ? row_end - r0 : ROWS;
        for (int64_t r = 0; r < rows; r++) {
          int64_t o = r0 + r;
          row_sums_of_tile(indptr, columns, values, packed, o, acc);
          float w_scale = w_scales[o], b = bias ? bias[o] : 0.0f;
          for (int64_t t = 0; t < TILE; t++) out[r][t] = scales[t] * w_scale * (float)(acc[t] - zeros[t] * row_sums[o]) + b;
          if (sums)
            for (int64_t t = 0; t < count; t++) sums[(t0 + t) * out_features + o] = acc[t];
        }
        /* a token's outputs of these rows are consecutive in y: whole stretches, not single lanes */
        for (int64_t t = 0; t < count; t++) {
          float *y_row = y + (t0 + t) * out_features + r0;
          for (int64_t r = 0; r < rows; r++) y_row[r] = out[r][t];
        }
      }
    }
    free(packed);
  }
  return failed ? -1 : 0;
}
