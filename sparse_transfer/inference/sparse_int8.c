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
 * x_scale[t] * w_scale[o] * (acc - x_zero[t] * row_sum[o]) + bias[o], and with `gelu` GELU of it
 * (the erf form BERT uses) while it is still in registers: the FFN's activation costs no pass of its own.
 * Threads: OpenMP splits tiles (or output rows when there are fewer tiles than threads).
 */
#include <math.h>
#include <stdint.h>

#include "kernel_parts.h"
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#define SPARSE_INT8_VNNI 1
#else
#define SPARSE_INT8_VNNI 0
#endif

#define TILE 64 /* tokens per tile: 4 AVX-512 vectors of 16 int32 accumulators */
#define ROWS 256 /* output rows finished together, then written to y a token at a time (64 KiB) */

int sparse_int8_has_vnni(void) { return SPARSE_INT8_VNNI; }

/* Per-token UINT8 quantization of one row of `features` floats: the range always holds 0 (so that
 * 0 is exact), scale = range / 255, zero = round(-min / scale), x_q = clamp(round(x * (1 / scale)) +
 * zero, 0, 255), rounding half to even (the vector path converts under the same default rounding). */
static void quantize_row(const float *row, int64_t features, uint8_t *out, float *scale, int32_t *zero) {
  float lo = 0.0f, hi = 0.0f;
  int64_t k = 0;
#ifdef __AVX512F__
  __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
  for (; k + 16 <= features; k += 16) {
    __m512 v = _mm512_loadu_ps(row + k);
    vlo = _mm512_min_ps(vlo, v);
    vhi = _mm512_max_ps(vhi, v);
  }
  lo = _mm512_reduce_min_ps(vlo);
  hi = _mm512_reduce_max_ps(vhi);
#endif
  for (; k < features; k++) {
    lo = row[k] < lo ? row[k] : lo;
    hi = row[k] > hi ? row[k] : hi;
  }
  float s = (hi - lo) / 255.0f;
  if (s == 0.0f) s = 1.0f;
  float inverse = 1.0f / s;
  int32_t z = (int32_t)nearbyintf(-lo / s);
  z = z < 0 ? 0 : (z > 255 ? 255 : z);
  *scale = s;
  *zero = z;
  k = 0;
#ifdef __AVX512F__
  __m512 vinverse = _mm512_set1_ps(inverse);
  __m512i vzero = _mm512_set1_epi32(z), vmin = _mm512_setzero_si512(), vmax = _mm512_set1_epi32(255);
  for (; k + 16 <= features; k += 16) {
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row + k), vinverse)), vzero);
    q = _mm512_min_epi32(_mm512_max_epi32(q, vmin), vmax);
    _mm_storeu_si128((__m128i *)(out + k), _mm512_cvtepi32_epi8(q));
  }
#endif
  for (; k < features; k++) {
    int32_t q = (int32_t)nearbyintf(row[k] * inverse) + z;
    out[k] = (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
  }
}

/* x (tokens x features, row stride) -> x_q (tokens x features) and per-token scale and zero: the
 * same arithmetic as the kernel's packing, for tests and references. */
void sparse_int8_quantize_rows(const float *x, int64_t x_row_stride, int64_t tokens, int64_t features,
                               uint8_t *x_q, float *scales, int32_t *zeros) {
  for (int64_t t = 0; t < tokens; t++)
    quantize_row(x + t * x_row_stride, features, x_q + t * features, &scales[t], &zeros[t]);
}

/* Quantize and pack tokens t0 .. t0 + count - 1 as [features / 4][TILE][4]; padded features hold
 * each token's zero point (the value 0), padded tokens hold 0. `row` has room for blocks * 4 bytes. */
static void pack_tile(const float *x, int64_t x_row_stride, int64_t features, int64_t blocks, int64_t t0,
                      int64_t count, uint8_t *packed, uint8_t *row, float *scales, int32_t *zeros) {
  for (int64_t t = 0; t < TILE; t++) {
    if (t >= count) {
      for (int64_t b = 0; b < blocks; b++) memset(packed + (b * TILE + t) * 4, 0, 4);
      scales[t] = 1.0f;
      zeros[t] = 0;
      continue;
    }
    quantize_row(x + (t0 + t) * x_row_stride, features, row, &scales[t], &zeros[t]);
    for (int64_t k = features; k < blocks * 4; k++) row[k] = (uint8_t)zeros[t];
    for (int64_t b = 0; b < blocks; b++) memcpy(packed + (b * TILE + t) * 4, row + 4 * b, 4);
  }
}

#ifdef __AVX512F__
/* exp(v) for v <= 0 (Cephes expf: v = n ln2 + r, a degree-6 polynomial in r, times 2^n); relative
 * error ~1e-7; below -87 the result is 0. */
static inline __m512 exp_nonpositive16(__m512 v) {
  v = _mm512_max_ps(v, _mm512_set1_ps(-87.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), v);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

/* GELU(x) = x / 2 * (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (absolute error below
 * 1.5e-7, so GELU within 1e-7 * |x| of the exact value). */
static inline __m512 gelu16(__m512 x) {
  __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
  __m512 a = _mm512_abs_ps(z);
  __m512 d = _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f));
  __m512 t = _mm512_rcp14_ps(d); /* 1 / d to 2^-14, then one Newton step (a division costs more) */
  t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
  __m512 p = _mm512_set1_ps(1.061405429f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
  p = _mm512_mul_ps(p, t);
  __m512 erf_abs = _mm512_fnmadd_ps(p, exp_nonpositive16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)),
                                    _mm512_set1_ps(1.0f));
  __mmask16 negative = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  __m512 erf = _mm512_mask_sub_ps(erf_abs, negative, _mm512_setzero_ps(), erf_abs);
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(erf, _mm512_set1_ps(1.0f)));
}
#endif

static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* One output row over one packed tile: the exact int32 sums (into `sums` when given) and the
 * dequantized outputs x_scale[t] * w_scale * (sum - x_zero[t] * row_sum) + b for the TILE tokens
 * (their GELU with `use_gelu`). */
static inline void row_of_tile(const int32_t *indptr, const int32_t *columns, const int32_t *values,
                               const uint8_t *packed, int64_t o, const float *scales, const int32_t *zeros,
                               int32_t row_sum, float w_scale, float b, int use_gelu, float *out, int32_t *sums) {
#if SPARSE_INT8_VNNI
  __m512i acc[TILE / 16];
  for (int i = 0; i < TILE / 16; i++) acc[i] = _mm512_setzero_si512();
  for (int32_t k = indptr[o]; k < indptr[o + 1]; k++) {
    const __m512i *xs = (const __m512i *)(packed + (int64_t)columns[k] * TILE * 4);
    __m512i w = _mm512_set1_epi32(values[k]);
    for (int i = 0; i < TILE / 16; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_load_si512(xs + i), w);
  }
  __m512i vrow_sum = _mm512_set1_epi32(row_sum);
  __m512 vw_scale = _mm512_set1_ps(w_scale), vb = _mm512_set1_ps(b);
  for (int i = 0; i < TILE / 16; i++) {
    if (sums) _mm512_storeu_si512(sums + 16 * i, acc[i]);
    __m512i exact = _mm512_sub_epi32(acc[i], _mm512_mullo_epi32(_mm512_loadu_si512(zeros + 16 * i), vrow_sum));
    __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(scales + 16 * i), vw_scale);
    _mm512_store_ps(out + 16 * i, _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(exact), vb));
  }
  if (use_gelu) /* apart from the loop above, so that a layer without GELU never computes it */
    for (int i = 0; i < TILE / 16; i++) _mm512_store_ps(out + 16 * i, gelu16(_mm512_load_ps(out + 16 * i)));
#else
  int32_t acc[TILE];
  for (int t = 0; t < TILE; t++) acc[t] = 0;
  for (int32_t k = indptr[o]; k < indptr[o + 1]; k++) {
    const uint8_t *xs = packed + (int64_t)columns[k] * TILE * 4;
    int32_t block = values[k];
    int32_t w0 = (int8_t)(block & 0xff), w1 = (int8_t)((block >> 8) & 0xff);
    int32_t w2 = (int8_t)((block >> 16) & 0xff), w3 = (int8_t)((block >> 24) & 0xff);
    for (int t = 0; t < TILE; t++)
      acc[t] += xs[4 * t] * w0 + xs[4 * t + 1] * w1 + xs[4 * t + 2] * w2 + xs[4 * t + 3] * w3;
  }
  for (int t = 0; t < TILE; t++) {
    if (sums) sums[t] = acc[t];
    out[t] = scales[t] * w_scale * (float)(acc[t] - zeros[t] * row_sum) + b;
  }
  if (use_gelu)
    for (int t = 0; t < TILE; t++) out[t] = gelu(out[t]);
#endif
}

#ifdef __AVX512F__
/* r[i] holds 16 values of row i; afterwards r[e] holds value e of every row (a 16 x 16 transpose). */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; g++) { /* rows 4g .. 4g + 3: u[4g + k] holds element 4j + k in 128-bit lane j */
    __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; k++) {
    __m512 v = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), w = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
    __m512 v2 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd), w2 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
    r[k] = _mm512_shuffle_f32x4(v, w, 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(v, w, 0xdd);
    r[4 + k] = _mm512_shuffle_f32x4(v2, w2, 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(v2, w2, 0xdd);
  }
}
#endif

/* out[r][t] (rows x TILE) -> y[t0 + t][r0 + r]: a token's outputs of these rows are consecutive in y,
 * so they are written as whole stretches (16 x 16 transposes where the CPU has AVX-512), a few
 * token rows at a time (few pages touched at once). */
static void write_rows(float (*out)[TILE], int64_t rows, int64_t count, float *y, int64_t t0, int64_t r0,
                       int64_t out_features) {
  int64_t t = 0;
#ifdef __AVX512F__
  for (; t + 16 <= count; t += 16) {
    int64_t r = 0;
    for (; r + 16 <= rows; r += 16) {
      __m512 v[16];
      for (int i = 0; i < 16; i++) v[i] = _mm512_load_ps(&out[r + i][t]);
      transpose16(v);
      for (int e = 0; e < 16; e++) _mm512_storeu_ps(y + (t0 + t + e) * out_features + r0 + r, v[e]);
    }
    for (int64_t e = 0; e < 16; e++)
      for (int64_t rr = r; rr < rows; rr++) y[(t0 + t + e) * out_features + r0 + rr] = out[rr][t + e];
  }
#endif
  for (; t < count; t++) {
    float *y_row = y + (t0 + t) * out_features + r0;
    for (int64_t r = 0; r < rows; r++) y_row[r] = out[r][t];
  }
}

/* y (tokens x out_features) from x (GELU of it with `use_gelu`); `sums` (tokens x out_features int32,
 * may be NULL) receives the exact integer sums. Returns 0, or -1 without memory. */
int sparse_int8_linear(const int32_t *indptr, const int32_t *columns, const int32_t *values, const int32_t *row_sums,
                       const float *w_scales, const float *bias, const float *x, int64_t x_row_stride,
                       int64_t tokens, int64_t in_features, float *y, int32_t *sums, int64_t out_features,
                       int64_t use_gelu, int64_t threads) {
  int64_t tiles = (tokens + TILE - 1) / TILE, blocks = (in_features + 3) / 4;
  int64_t parts = kernel_part_count(tiles, threads);
  int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed) if (threads > 1)
  for (int64_t part = 0; part < parts; part++) {
    kernel_part range = kernel_part_of(part, tiles, out_features, threads);
    int64_t tile_begin = range.tile_begin, tile_end = range.tile_end;
    int64_t row_begin = range.row_begin, row_end = range.row_end;
    uint8_t *packed = aligned_alloc(64, (size_t)(blocks * TILE * 4 + 64));
    uint8_t *row = malloc((size_t)(blocks * 4 + 16));
    float (*out)[TILE] = aligned_alloc(64, sizeof(float[ROWS][TILE]));
    if (!packed || !row || !out) {
      free(packed);
      free(row);
      free(out);
      failed = 1;
      continue;
    }
    float scales[TILE] __attribute__((aligned(64)));
    int32_t zeros[TILE] __attribute__((aligned(64))), tile_sums[TILE];
    for (int64_t tile = tile_begin; tile < tile_end; tile++) {
      int64_t t0 = tile * TILE, count = tokens - t0 < TILE ? tokens - t0 : TILE;
      pack_tile(x, x_row_stride, in_features, blocks, t0, count, packed, row, scales, zeros);
      for (int64_t r0 = row_begin; r0 < row_end; r0 += ROWS) {
        int64_t rows = row_end - r0 < ROWS ? row_end - r0 : ROWS;
        for (int64_t r = 0; r < rows; r++) {
          int64_t o = r0 + r;
          row_of_tile(indptr, columns, values, packed, o, scales, zeros, row_sums[o], w_scales[o], bias ? bias[o] : 0.0f,
                      (int)use_gelu, out[r], sums ? tile_sums : NULL);
          if (sums)
            for (int64_t t = 0; t < count; t++) sums[(t0 + t) * out_features + o] = tile_sums[t];
        }
        write_rows(out, rows, count, y, t0, r0, out_features);
      }
    }
    free(packed);
    free(row);
    free(out);
  }
  return failed ? -1 : 0;
}
