/* y = dequantize(quantize(x) @ W_q^T) + bias with W_q INT8 in 1x4-block CSR: the "sparse_int8" kernel.
 *
 * Weights: per output channel symmetric INT8 (w = w_scale[o] * w_q); every row keeps the 1x4 blocks
 * (4 consecutive input features) that hold a non-zero, as one int32 of 4 bytes, with the block's
 * column (input feature / 4). Activations: per token asymmetric UINT8 (x = x_scale[t] * (x_q - x_zero[t])),
 * quantized while a tile of TILE tokens is packed as [feature / 4][token][4 bytes], so that one
 * block of a row meets the same 4 features of every token of the tile in one vector.
 *
 * With AVX-512 VNNI one vpdpbusd multiplies 16 tokens x 4 features (u8 x s8, exact int32 sums).
 * With AVX2 one vpmaddubsw multiplies 8 tokens x 4 features into pairs of int16 sums and one
 * vpmaddwd adds each pair into int32: exact as long as no pair sum saturates int16, so every pair of
 * weights of a block has |w_a + w_b| <= PAIR_LIMIT (with x in [0, 255] and |w| <= 127, the sum
 * x_a w_a + x_b w_b then stays within 255 x 128 < 2^15); the weights' format splits
 * the blocks above it into two blocks of the same column whose weights add up to the original
 * (kernels.Int8BlockWeight, told the limit by sparse_int8_pair_limit). Elsewhere a portable loop
 * computes the same int32 sums. Accumulators are exact: the output is
 * x_scale[t] * w_scale[o] * (acc - x_zero[t] * row_sum[o]) + bias[o], and with `gelu` GELU of it
 * (the erf form BERT uses) while it is still in registers: the FFN's activation costs no pass of its own.
 * With a residual, the output block of BERT-style layers, LayerNorm(y + residual), is computed on each
 * tile's rows while they are in cache.
 * Threads: OpenMP splits tiles (or output rows when there are fewer tiles than threads).
 */
#include <math.h>
#include <stdint.h>

#include "kernel_parts.h"
#include "vector_math.h"
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#define SPARSE_INT8_VNNI 1
#else
#define SPARSE_INT8_VNNI 0
#endif
#define SPARSE_INT8_AVX2 (!SPARSE_INT8_VNNI && VECTOR_MATH_AVX2)
#define PAIR_LIMIT 128 /* the AVX2 path's bound on |w_a + w_b| of a byte pair: 255 * 128 <= 32767 */

#define TILE 64 /* tokens per tile: 4 AVX-512 vectors of 16 int32 accumulators */
#define ROWS 256 /* output rows finished together, then written to y a token at a time (64 KiB) */

/* What a call may add around the product; a NULL pointer leaves that part out. */
typedef struct {
  const uint8_t *x_q; /* x already quantized (tokens x in_features, per-token x_scales, x_zeros): x unread */
  const float *x_scales;
  const int32_t *x_zeros;
  const float *residual; /* y = LayerNorm(y + residual) by norm_weight, norm_bias, norm_eps */
  int64_t residual_stride;
  const float *norm_weight, *norm_bias;
  float norm_eps;
  uint8_t *y_q; /* y quantized per token (tokens x out_features, y_scales, y_zeros) instead of y itself */
  float *y_scales;
  int32_t *y_zeros;
} sparse_int8_options;

/* The largest |w_a + w_b| of a pair of weights (bytes 0-1, 2-3 of a block) this build multiplies
 * exactly; 0: no limit. */
int sparse_int8_pair_limit(void) { return SPARSE_INT8_AVX2 ? PAIR_LIMIT : 0; }

/* Which instructions the product runs on: "avx512-vnni", "avx2" or "portable". */
const char *sparse_int8_path(void) { return SPARSE_INT8_VNNI ? "avx512-vnni" : SPARSE_INT8_AVX2 ? "avx2" : "portable"; }

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
#elif VECTOR_MATH_AVX2
  __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
  for (; k + 8 <= features; k += 8) {
    __m256 v = _mm256_loadu_ps(row + k);
    vlo = _mm256_min_ps(vlo, v);
    vhi = _mm256_max_ps(vhi, v);
  }
  lo = min8(vlo);
  hi = max8(vhi);
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
#elif VECTOR_MATH_AVX2
  __m256 vinverse = _mm256_set1_ps(inverse);
  __m256i vzero = _mm256_set1_epi32(z), vmin = _mm256_setzero_si256(), vmax = _mm256_set1_epi32(255);
  __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (; k + 8 <= features; k += 8) {
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row + k), vinverse)), vzero);
    q = _mm256_min_epi32(_mm256_max_epi32(q, vmin), vmax);
    /* packs work per 128-bit lane: bytes 0-3 of each lane hold q0-3 and q4-7; gather them */
    __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(_mm256_packus_epi32(q, q), q), order);
    _mm_storel_epi64((__m128i *)(out + k), _mm256_castsi256_si128(bytes));
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

/* Quantize (or, given x_q, copy) and pack tokens t0 .. t0 + count - 1 as [features / 4][TILE][4];
 * padded features hold each token's zero point (the value 0), padded tokens hold 0. `rows` has room
 * for 16 rows of blocks * 4 bytes: 16 tokens are quantized into it, then moved 16 blocks at a time
 * (a 16 x 16 transpose of 4-byte blocks where the CPU has AVX-512, two 8 x 8 ones with AVX2). */
static void pack_tile(const float *x, int64_t x_row_stride, const sparse_int8_options *options, int64_t features,
                      int64_t blocks, int64_t t0, int64_t count, uint8_t *packed, uint8_t *rows, float *scales,
                      int32_t *zeros) {
  int64_t row_bytes = blocks * 4;
  for (int64_t g = 0; g < TILE; g += 16) {
    for (int64_t t = g; t < g + 16; t++) {
      uint8_t *row = rows + (t - g) * row_bytes;
      if (t >= count) {
        memset(row, 0, (size_t)row_bytes);
        scales[t] = 1.0f;
        zeros[t] = 0;
        continue;
      }
      if (options->x_q) {
        memcpy(row, options->x_q + (t0 + t) * features, (size_t)features);
        scales[t] = options->x_scales[t0 + t];
        zeros[t] = options->x_zeros[t0 + t];
      } else {
        quantize_row(x + (t0 + t) * x_row_stride, features, row, &scales[t], &zeros[t]);
      }
      for (int64_t k = features; k < row_bytes; k++) row[k] = (uint8_t)zeros[t];
    }
    int64_t b0 = 0;
#ifdef __AVX512F__
    for (; b0 + 16 <= blocks; b0 += 16) {
      __m512 v[16];
      for (int r = 0; r < 16; r++) v[r] = _mm512_loadu_ps((const float *)(rows + r * row_bytes + 4 * b0));
      transpose16(v); /* v[e]: block b0 + e of the 16 tokens */
      for (int e = 0; e < 16; e++) _mm512_store_ps((float *)(packed + ((b0 + e) * TILE + g) * 4), v[e]);
    }
#elif VECTOR_MATH_AVX2
    for (; b0 + 8 <= blocks; b0 += 8)
      for (int h = 0; h < 16; h += 8) {
        __m256 v[8];
        for (int r = 0; r < 8; r++) v[r] = _mm256_loadu_ps((const float *)(rows + (h + r) * row_bytes + 4 * b0));
        transpose8(v); /* v[e]: block b0 + e of tokens g + h .. g + h + 7 */
        for (int e = 0; e < 8; e++) _mm256_store_ps((float *)(packed + ((b0 + e) * TILE + g + h) * 4), v[e]);
      }
#endif
    for (; b0 < blocks; b0++)
      for (int r = 0; r < 16; r++) memcpy(packed + (b0 * TILE + g + r) * 4, rows + r * row_bytes + 4 * b0, 4);
  }
}

static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* One output row over one packed tile: the exact int32 sums (into `sums` when given) and the
 * dequantized outputs x_scale[t] * w_scale * (sum - x_zero[t] * row_sum) + b for the TILE tokens
 * (their GELU with `use_gelu`). */
static inline void row_of_tile(const int32_t *indptr, const int32_t *columns, const int32_t *values,
                               const uint8_t *packed, int64_t o, const float *scales, const int32_t *zeros,
                               int32_t row_sum, float w_scale, float b, int use_gelu, float *out, int32_t *sums) {
#if SPARSE_INT8_VNNI
  /* Two sets of accumulators, for even and odd blocks: twice the independent vpdpbusd chains, so
   * that their latency does not bound the throughput (int32 sums: the same result in any order). */
  __m512i acc[TILE / 16], odd[TILE / 16];
  for (int i = 0; i < TILE / 16; i++) acc[i] = odd[i] = _mm512_setzero_si512();
  int32_t k = indptr[o], end = indptr[o + 1];
  for (; k + 1 < end; k += 2) {
    const __m512i *xs = (const __m512i *)(packed + (int64_t)columns[k] * TILE * 4);
    const __m512i *xs_odd = (const __m512i *)(packed + (int64_t)columns[k + 1] * TILE * 4);
    __m512i w = _mm512_set1_epi32(values[k]), w_odd = _mm512_set1_epi32(values[k + 1]);
    for (int i = 0; i < TILE / 16; i++) {
      acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_load_si512(xs + i), w);
      odd[i] = _mm512_dpbusd_epi32(odd[i], _mm512_load_si512(xs_odd + i), w_odd);
    }
  }
  if (k < end) {
    const __m512i *xs = (const __m512i *)(packed + (int64_t)columns[k] * TILE * 4);
    __m512i w = _mm512_set1_epi32(values[k]);
    for (int i = 0; i < TILE / 16; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_load_si512(xs + i), w);
  }
  for (int i = 0; i < TILE / 16; i++) acc[i] = _mm512_add_epi32(acc[i], odd[i]);
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
#elif SPARSE_INT8_AVX2
  /* Per block and 8 tokens: vpmaddubsw (pairs of u8 x s8 products, int16: exact under PAIR_LIMIT),
   * then vpmaddwd by ones (each pair into int32). */
  __m256i acc[TILE / 8];
  for (int i = 0; i < TILE / 8; i++) acc[i] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int32_t k = indptr[o]; k < indptr[o + 1]; k++) {
    const __m256i *xs = (const __m256i *)(packed + (int64_t)columns[k] * TILE * 4);
    __m256i w = _mm256_set1_epi32(values[k]);
    for (int i = 0; i < TILE / 8; i++)
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256(xs + i), w), ones));
  }
  __m256i vrow_sum = _mm256_set1_epi32(row_sum);
  __m256 vw_scale = _mm256_set1_ps(w_scale), vb = _mm256_set1_ps(b);
  for (int i = 0; i < TILE / 8; i++) {
    if (sums) _mm256_storeu_si256((__m256i *)(sums + 8 * i), acc[i]);
    __m256i exact = _mm256_sub_epi32(acc[i], _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(zeros + 8 * i)),
                                                                vrow_sum));
    __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(scales + 8 * i), vw_scale);
    _mm256_store_ps(out + 8 * i, _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(exact), vb));
  }
  if (use_gelu)
    for (int i = 0; i < TILE / 8; i++) _mm256_store_ps(out + 8 * i, gelu8(_mm256_load_ps(out + 8 * i)));
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

/* out[r][t] (rows x TILE) -> y[t0 + t][r0 + r]: a token's outputs of these rows are consecutive in y,
 * so they are written as whole stretches (16 x 16 transposes with AVX-512, 8 x 8 with AVX2), a few
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
#elif VECTOR_MATH_AVX2
  for (; t + 8 <= count; t += 8) {
    int64_t r = 0;
    for (; r + 8 <= rows; r += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; i++) v[i] = _mm256_load_ps(&out[r + i][t]);
      transpose8(v);
      for (int e = 0; e < 8; e++) _mm256_storeu_ps(y + (t0 + t + e) * out_features + r0 + r, v[e]);
    }
    for (int64_t e = 0; e < 8; e++)
      for (int64_t rr = r; rr < rows; rr++) y[(t0 + t + e) * out_features + r0 + rr] = out[rr][t + e];
  }
#endif
  for (; t < count; t++) {
    float *y_row = y + (t0 + t) * out_features + r0;
    for (int64_t r = 0; r < rows; r++) y_row[r] = out[r][t];
  }
}

/* y[t] = LayerNorm(y[t] + residual[t]) (weight, bias, eps; the biased variance, as torch) for
 * `count` rows of `features`, in place: the output block of BERT-style layers, while y is in cache. */
static void add_layer_norm(float *y, const float *residual, int64_t residual_stride, int64_t count, int64_t features,
                           const float *weight, const float *bias, float eps) {
  for (int64_t t = 0; t < count; t++) {
    float *row = y + t * features;
    const float *res = residual + t * residual_stride;
    float sum = 0.0f, squares = 0.0f;
    int64_t k = 0;
#ifdef __AVX512F__
    __m512 vsum = _mm512_setzero_ps();
    for (; k + 16 <= features; k += 16) {
      __m512 v = _mm512_add_ps(_mm512_loadu_ps(row + k), _mm512_loadu_ps(res + k));
      _mm512_storeu_ps(row + k, v);
      vsum = _mm512_add_ps(vsum, v);
    }
    sum = _mm512_reduce_add_ps(vsum);
#elif VECTOR_MATH_AVX2
    __m256 vsum = _mm256_setzero_ps();
    for (; k + 8 <= features; k += 8) {
      __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + k), _mm256_loadu_ps(res + k));
      _mm256_storeu_ps(row + k, v);
      vsum = _mm256_add_ps(vsum, v);
    }
    sum = sum8(vsum);
#endif
    for (; k < features; k++) {
      row[k] += res[k];
      sum += row[k];
    }
    float mean = sum / (float)features;
    k = 0;
#ifdef __AVX512F__
    __m512 vmean = _mm512_set1_ps(mean), vsquares = _mm512_setzero_ps();
    for (; k + 16 <= features; k += 16) {
      __m512 d = _mm512_sub_ps(_mm512_loadu_ps(row + k), vmean);
      vsquares = _mm512_fmadd_ps(d, d, vsquares);
    }
    squares = _mm512_reduce_add_ps(vsquares);
#elif VECTOR_MATH_AVX2
    __m256 vmean = _mm256_set1_ps(mean), vsquares = _mm256_setzero_ps();
    for (; k + 8 <= features; k += 8) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(row + k), vmean);
      vsquares = _mm256_fmadd_ps(d, d, vsquares);
    }
    squares = sum8(vsquares);
#endif
    for (; k < features; k++) squares += (row[k] - mean) * (row[k] - mean);
    float inverse = 1.0f / sqrtf(squares / (float)features + eps);
    k = 0;
#ifdef __AVX512F__
    __m512 vinverse = _mm512_set1_ps(inverse);
    for (; k + 16 <= features; k += 16) {
      __m512 normal = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(row + k), vmean), vinverse);
      _mm512_storeu_ps(row + k, _mm512_fmadd_ps(normal, _mm512_loadu_ps(weight + k), _mm512_loadu_ps(bias + k)));
    }
#elif VECTOR_MATH_AVX2
    __m256 vinverse = _mm256_set1_ps(inverse);
    for (; k + 8 <= features; k += 8) {
      __m256 normal = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + k), vmean), vinverse);
      _mm256_storeu_ps(row + k, _mm256_fmadd_ps(normal, _mm256_loadu_ps(weight + k), _mm256_loadu_ps(bias + k)));
    }
#endif
    for (; k < features; k++) row[k] = (row[k] - mean) * inverse * weight[k] + bias[k];
  }
}

/* The epilogue of `count` finished rows of y (row stride out_features) for tokens t0..: the residual's
 * LayerNorm, then the per-token quantization into y_q. */
static void finish_rows(float *y, int64_t t0, int64_t count, int64_t out_features, const sparse_int8_options *o) {
  if (o->residual)
    add_layer_norm(y, o->residual + t0 * o->residual_stride, o->residual_stride, count, out_features, o->norm_weight,
                   o->norm_bias, o->norm_eps);
  if (o->y_q)
    for (int64_t t = 0; t < count; t++)
      quantize_row(y + t * out_features, out_features, o->y_q + (t0 + t) * out_features, &o->y_scales[t0 + t],
                   &o->y_zeros[t0 + t]);
}

/* y (tokens x out_features) from x (GELU of it with `use_gelu`); `sums` (tokens x out_features int32,
 * may be NULL) receives the exact integer sums; `options` (may be NULL) adds a quantized input, the
 * residual's LayerNorm and a quantized output. The epilogue runs per tile as soon as its rows are
 * done (with y_q, in a buffer of the thread's own: y is not written), or after all tiles where threads
 * split the rows. Returns 0, or -1 without memory. */
int sparse_int8_linear(const int32_t *indptr, const int32_t *columns, const int32_t *values, const int32_t *row_sums,
                       const float *w_scales, const float *bias, const float *x, int64_t x_row_stride,
                       int64_t tokens, int64_t in_features, float *y, int32_t *sums, int64_t out_features,
                       int64_t use_gelu, const sparse_int8_options *options, int64_t threads) {
  static const sparse_int8_options none = {0};
  const sparse_int8_options *o = options ? options : &none;
  int64_t tiles = (tokens + TILE - 1) / TILE, blocks = (in_features + 3) / 4;
  int64_t parts = kernel_part_count(tiles, threads);
  int rows_split = tiles < threads, epilogue = o->residual || o->y_q, failed = 0;
  int own_rows = o->y_q && !rows_split; /* finished tiles go to a buffer of the thread's own */
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed) if (threads > 1)
  for (int64_t part = 0; part < parts; part++) {
    kernel_part range = kernel_part_of(part, tiles, out_features, threads);
    int64_t tile_begin = range.tile_begin, tile_end = range.tile_end;
    int64_t row_begin = range.row_begin, row_end = range.row_end;
    uint8_t *packed = aligned_alloc(64, (size_t)(blocks * TILE * 4 + 64));
    uint8_t *token_rows = malloc((size_t)(16 * blocks * 4 + 16));
    float (*out)[TILE] = aligned_alloc(64, sizeof(float[ROWS][TILE]));
    float *tile_y = own_rows ? malloc((size_t)(TILE * out_features) * sizeof(float)) : NULL;
    if (!packed || !token_rows || !out || (own_rows && !tile_y)) {
      free(packed);
      free(token_rows);
      free(out);
      free(tile_y);
      failed = 1;
      continue;
    }
    float scales[TILE] __attribute__((aligned(64)));
    int32_t zeros[TILE] __attribute__((aligned(64))), tile_sums[TILE];
    for (int64_t tile = tile_begin; tile < tile_end; tile++) {
      int64_t t0 = tile * TILE, count = tokens - t0 < TILE ? tokens - t0 : TILE;
      pack_tile(x, x_row_stride, o, in_features, blocks, t0, count, packed, token_rows, scales, zeros);
      for (int64_t r0 = row_begin; r0 < row_end; r0 += ROWS) {
        int64_t rows = row_end - r0 < ROWS ? row_end - r0 : ROWS;
        for (int64_t r = 0; r < rows; r++) {
          int64_t o_row = r0 + r;
          row_of_tile(indptr, columns, values, packed, o_row, scales, zeros, row_sums[o_row], w_scales[o_row],
                      bias ? bias[o_row] : 0.0f, (int)use_gelu, out[r], sums ? tile_sums : NULL);
          if (sums)
            for (int64_t t = 0; t < count; t++) sums[(t0 + t) * out_features + o_row] = tile_sums[t];
        }
        write_rows(out, rows, count, own_rows ? tile_y : y, own_rows ? 0 : t0, r0, out_features);
      }
      if (epilogue && !rows_split) finish_rows(own_rows ? tile_y : y + t0 * out_features, t0, count, out_features, o);
    }
    free(packed);
    free(token_rows);
    free(out);
    free(tile_y);
  }
  if (epilogue && rows_split && !failed) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t t = 0; t < tokens; t++) finish_rows(y + t * out_features, t, 1, out_features, o);
  }
  return failed ? -1 : 0;
}
