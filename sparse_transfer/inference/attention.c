/* softmax(scale * Q K^T + mask) V with bfloat16 dot products: the "bf16" attention kernel.
 *
 * Q, K and V are read in place from the projections' outputs (any batch, head and position strides,
 * unit stride along the head dimension): no transposed or contiguous copies. Per (sequence, head),
 * on one thread: K is packed as bf16 pairs of consecutive head features, [D / 2][keys] (a 16 x 16
 * transpose per block), V as bf16 pairs of consecutive keys, [keys / 2][D], Q (times the scale) as
 * bf16 pairs per row. For ROWS query rows at a time, one vdpbf16ps multiplies a broadcast pair of a
 * row with the same pair of 16 keys (scores) or of 16 head features (output), accumulating in fp32;
 * the softmax runs in fp32 on the scores still in L1 (exp with the shared Cephes polynomial), its
 * probabilities are rounded to bf16 once, and the output is divided by their fp32 sum.
 * Rounding: Q, K, V and the probabilities to bf16 (8 significant bits, to nearest even); every
 * sum in fp32. Masked keys (mask 0) get probability exactly 0; a query whose every key is masked
 * gets a zero output. Output: (batch, queries, heads, D) contiguous, as attention layers return it.
 * With AMX (Linux grants its tile state on request), one tdpbf16ps multiplies 16 query rows by 32
 * head features of 16 keys (scores), or 16 rows of probabilities by 32 keys of 16 head features
 * (output), from the same packed layouts; otherwise ROWS query rows at a time go through vdpbf16ps.
 * Both round the same inputs to bf16 and sum in fp32 (in another order).
 * Threads: OpenMP splits the (sequence, head) pairs.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vector_math.h"

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define BF16_ATTENTION 1
#else
#define BF16_ATTENTION 0
#endif

#if BF16_ATTENTION && defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define AMX_ATTENTION 1
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#else
#define AMX_ATTENTION 0
#endif
#define AMX_ROWS 16 /* query rows per AMX tile */

int bf16_attention_available(void) { return BF16_ATTENTION; }

/* Whether AMX runs the products: built with it and granted by the kernel (asked once per process). */
static int amx_ready(void) {
#if AMX_ATTENTION
  static int granted = -1; /* a race only asks twice: the answer is the same */
  if (granted < 0) granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
  return granted;
#else
  return 0;
#endif
}

/* Which instructions the products run on: "amx-bf16", "avx512-bf16" or "none". */
const char *bf16_attention_path(void) { return amx_ready() ? "amx-bf16" : BF16_ATTENTION ? "avx512-bf16" : "none"; }

#if BF16_ATTENTION
#define ROWS 4 /* query rows per register tile */
#define VECS 4 /* 16-lane vectors per tile row: ROWS x VECS fp32 accumulators */

/* 32 floats -> 32 bf16 in order: 16 pairs (x[2i], x[2i + 1]) as 32-bit lanes, the even one low. */
static inline __m512i bf16_pairs(const float *x, __m512 scale) {
  __m512 lo = _mm512_mul_ps(_mm512_loadu_ps(x), scale), hi = _mm512_mul_ps(_mm512_loadu_ps(x + 16), scale);
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* 16 lanes of (a[d], b[d]) bf16 pairs, a's value low: two rows of consecutive keys interleaved. */
static inline __m512i bf16_interleave(__m512 a, __m512 b) {
  __m512i low = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a));
  __m512i high = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(b));
  return _mm512_or_si512(low, _mm512_slli_epi32(high, 16));
}

/* Kp[p * keys_padded + j] = (K[j][2p], K[j][2p + 1]); zero for j >= keys. */
static void pack_keys(const float *k, int64_t k_stride, int64_t keys, int64_t keys_padded, int64_t dim,
                      int32_t *kp) {
  __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t j0 = 0; j0 < keys_padded; j0 += 16)
    for (int64_t p0 = 0; p0 < dim / 2; p0 += 16) {
      __m512 v[16];
      for (int r = 0; r < 16; r++)
        v[r] = j0 + r < keys ? _mm512_castsi512_ps(bf16_pairs(k + (j0 + r) * k_stride + 2 * p0, one))
                             : _mm512_setzero_ps();
      transpose16(v);
      for (int e = 0; e < 16; e++) _mm512_storeu_ps((float *)(kp + (p0 + e) * keys_padded + j0), v[e]);
    }
}

/* Vp[q * dim + d] = (V[2q][d], V[2q + 1][d]); zero for keys >= keys. */
static void pack_values(const float *v, int64_t v_stride, int64_t keys, int64_t keys_padded, int64_t dim,
                        int32_t *vp) {
  for (int64_t q = 0; q < keys_padded / 2; q++)
    for (int64_t d = 0; d < dim; d += 16) {
      __m512 a = 2 * q < keys ? _mm512_loadu_ps(v + 2 * q * v_stride + d) : _mm512_setzero_ps();
      __m512 b = 2 * q + 1 < keys ? _mm512_loadu_ps(v + (2 * q + 1) * v_stride + d) : _mm512_setzero_ps();
      _mm512_storeu_si512(vp + q * dim + d, bf16_interleave(a, b));
    }
}

/* acc[r][c] = sum over s < steps of the bf16 pair a[r * a_stride + s] times the 16 pairs
 * b[s * b_stride + 16c ..]: ROWS broadcast row pairs against `vecs` loaded vectors per step (scores:
 * Q pairs against K pairs over the head's pairs; output: probability pairs against V pairs over key pairs). */
static inline __attribute__((always_inline)) void dot_tile(const int32_t *a, int64_t a_stride, const int32_t *b,
                                                           int64_t b_stride, int64_t steps, int vecs,
                                                           __m512 acc[ROWS][VECS]) {
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < vecs; c++) acc[r][c] = _mm512_setzero_ps();
  for (int64_t step = 0; step < steps; step++) {
    __m512i bv[VECS];
    for (int c = 0; c < vecs; c++) bv[c] = _mm512_loadu_si512(b + step * b_stride + 16 * c);
    for (int r = 0; r < ROWS; r++) {
      __m512i pair = _mm512_set1_epi32(a[r * a_stride + step]);
      for (int c = 0; c < vecs; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)pair, (__m512bh)bv[c]);
    }
  }
}

/* scores[r][j0 + 16c + lane] = Q pairs of rows i0 + r . K pairs, for `vecs` vectors of keys from j0. */
static inline __attribute__((always_inline)) void score_tile(const int32_t *qp, int64_t pairs, const int32_t *kp,
                                                             int64_t keys_padded, int64_t j0, int vecs,
                                                             float *scores) {
  __m512 acc[ROWS][VECS];
  dot_tile(qp, pairs, kp + j0, keys_padded, pairs, vecs, acc);
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < vecs; c++) _mm512_storeu_ps(scores + r * keys_padded + j0 + 16 * c, acc[r][c]);
}

/* out rows (`rows` of ROWS, `vecs` vectors of head features from d0) = probabilities . V pairs, times 1 / sum. */
static inline __attribute__((always_inline)) void value_tile(const int32_t *pp, int64_t key_pairs, const int32_t *vp,
                                                             int64_t dim, int64_t d0, int vecs,
                                                             const float *inverse, float *out,
                                                             int64_t out_stride, int64_t rows) {
  __m512 acc[ROWS][VECS];
  dot_tile(pp, key_pairs, vp + d0, dim, key_pairs, vecs, acc);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < vecs; c++)
      _mm512_storeu_ps(out + r * out_stride + d0 + 16 * c, _mm512_mul_ps(acc[r][c], _mm512_set1_ps(inverse[r])));
}

/* One row's softmax over `keys` scores (scores[j] for j < keys; `mask` bytes, 0 = masked, or NULL):
 * the unnormalized probabilities as bf16 pairs into pp (keys_padded / 2 lanes, zero past keys);
 * returns 1 / their sum, or 0 when every key is masked. */
static float softmax_row(float *scores, const uint8_t *mask, int64_t keys, int64_t keys_padded, int32_t *pp) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < keys_padded; j += 16) {
    __mmask16 valid = j + 16 <= keys ? 0xffff : (__mmask16)((1u << (keys > j ? keys - j : 0)) - 1);
    if (mask) valid &= _mm_test_epi8_mask(_mm_maskz_loadu_epi8(valid, mask + j), _mm_set1_epi8(-1));
    __m512 s = _mm512_mask_blend_ps(valid, _mm512_set1_ps(-INFINITY), _mm512_loadu_ps(scores + j));
    _mm512_storeu_ps(scores + j, s);
    vmax = _mm512_max_ps(vmax, s);
  }
  float row_max = _mm512_reduce_max_ps(vmax);
  if (row_max == -INFINITY) {
    memset(pp, 0, (size_t)keys_padded * 2);
    return 0.0f;
  }
  __m512 shift = _mm512_set1_ps(row_max), vsum = _mm512_setzero_ps();
  for (int64_t j = 0; j < keys_padded; j += 32) {
    __m512 e[2];
    for (int h = 0; h < 2; h++) {
      __m512 s = _mm512_loadu_ps(scores + j + 16 * h);
      __mmask16 valid = _mm512_cmp_ps_mask(s, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
      e[h] = _mm512_maskz_mov_ps(valid, exp_nonpositive16(_mm512_sub_ps(s, shift)));
      vsum = _mm512_add_ps(vsum, e[h]);
    }
    _mm512_storeu_si512(pp + j / 2, (__m512i)_mm512_cvtne2ps_pbh(e[1], e[0]));
  }
  return 1.0f / _mm512_reduce_add_ps(vsum);
}

typedef struct {
  int32_t *kp, *vp, *qp, *pp;
  float *scores, *out; /* out: AMX_ROWS x 64 fp32, the AMX output tiles before the division by the sums */
} scratch;

/* K and V packed for one (sequence, head), and Q times the scale as bf16 pairs, zero rows up to queries_padded. */
static void pack_head(const float *q, const float *k, const float *v, int64_t queries, int64_t queries_padded,
                      int64_t keys, int64_t keys_padded, int64_t dim, int64_t q_stride, int64_t k_stride,
                      int64_t v_stride, float scale, scratch s) {
  int64_t pairs = dim / 2;
  pack_keys(k, k_stride, keys, keys_padded, dim, s.kp);
  pack_values(v, v_stride, keys, keys_padded, dim, s.vp);
  __m512 scale16 = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < queries_padded; i++)
    for (int64_t p0 = 0; p0 < pairs; p0 += 16)
      _mm512_storeu_si512(s.qp + i * pairs + p0,
                          i < queries ? bf16_pairs(q + i * q_stride + 2 * p0, scale16) : _mm512_setzero_si512());
}

/* One (sequence, head): q, k, v and mask rows at their strides; out rows of `out_stride` floats. */
static void attend(const float *q, const float *k, const float *v, const uint8_t *mask, int64_t queries, int64_t keys,
                   int64_t dim, int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t mask_stride, float scale,
                   float *out, int64_t out_stride, scratch s) {
  int64_t keys_padded = (keys + 31) / 32 * 32, queries_padded = (queries + ROWS - 1) / ROWS * ROWS;
  int64_t pairs = dim / 2, key_pairs = keys_padded / 2;
  pack_head(q, k, v, queries, queries_padded, keys, keys_padded, dim, q_stride, k_stride, v_stride, scale, s);
  for (int64_t i0 = 0; i0 < queries_padded; i0 += ROWS) {
    const int32_t *qp = s.qp + i0 * pairs;
    int64_t j0 = 0;
    for (; j0 + 16 * VECS <= keys_padded; j0 += 16 * VECS) score_tile(qp, pairs, s.kp, keys_padded, j0, VECS, s.scores);
    if (j0 < keys_padded) score_tile(qp, pairs, s.kp, keys_padded, j0, 2, s.scores); /* the last 32 keys */
    float inverse[ROWS];
    int64_t rows = queries - i0 < ROWS ? queries - i0 : ROWS;
    for (int64_t r = 0; r < ROWS; r++)
      inverse[r] = softmax_row(s.scores + r * keys_padded, mask && r < rows ? mask + (i0 + r) * mask_stride : NULL,
                               r < rows ? keys : 0, keys_padded, s.pp + r * key_pairs);
    int64_t d0 = 0;
    for (; d0 + 16 * VECS <= dim; d0 += 16 * VECS)
      value_tile(s.pp, key_pairs, s.vp, dim, d0, VECS, inverse, out + i0 * out_stride, out_stride, rows);
    if (d0 < dim) value_tile(s.pp, key_pairs, s.vp, dim, d0, 2, inverse, out + i0 * out_stride, out_stride, rows);
  }
}

#if AMX_ATTENTION
/* Tiles 0-3: fp32 accumulators (16 x 16); 4: the A operand (16 rows of 16 bf16 pairs); 5, 6: B operands
 * (16 pair rows of 16 columns). Every tile is 16 rows of 64 bytes. */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
} tile_config;

static void configure_tiles(void) {
  tile_config config __attribute__((aligned(64))) = {.palette = 1};
  for (int t = 0; t < 7; t++) {
    config.bytes_per_row[t] = 64;
    config.rows[t] = 16;
  }
  _tile_loadconfig(&config);
}

/* Tiles 0-3 (or 0-1 with `two`) += A (tile 4, loaded from a, a_stride bytes) x the 64 (32) columns of B
 * from b, 16 columns apart, b_stride bytes between pair rows; over `steps` steps of 16 pairs. */
#define AMX_PRODUCT(a, a_step, a_stride, b, b_step, b_stride, steps, two)        \
  do {                                                                           \
    for (int64_t step = 0; step < (steps); step++) {                             \
      _tile_loadd(4, (a) + step * (a_step), (a_stride));                         \
      const int32_t *b_ = (b) + step * (b_step);                                 \
      _tile_loadd(5, b_, (b_stride));                                            \
      _tile_dpbf16ps(0, 4, 5);                                                   \
      _tile_loadd(6, b_ + 16, (b_stride));                                       \
      _tile_dpbf16ps(1, 4, 6);                                                   \
      if (!(two)) {                                                              \
        _tile_loadd(5, b_ + 32, (b_stride));                                     \
        _tile_dpbf16ps(2, 4, 5);                                                 \
        _tile_loadd(6, b_ + 48, (b_stride));                                     \
        _tile_dpbf16ps(3, 4, 6);                                                 \
      }                                                                          \
    }                                                                            \
  } while (0)

static void zero_tiles(int two) {
  _tile_zero(0);
  _tile_zero(1);
  if (!two) {
    _tile_zero(2);
    _tile_zero(3);
  }
}

static void store_tiles(float *to, int64_t stride_bytes, int two) {
  _tile_stored(0, to, stride_bytes);
  _tile_stored(1, to + 16, stride_bytes);
  if (!two) {
    _tile_stored(2, to + 32, stride_bytes);
    _tile_stored(3, to + 48, stride_bytes);
  }
}

/* attend() with AMX_ROWS query rows at a time through the tiles (configured by the caller). */
static void attend_amx(const float *q, const float *k, const float *v, const uint8_t *mask, int64_t queries,
                       int64_t keys, int64_t dim, int64_t q_stride, int64_t k_stride, int64_t v_stride,
                       int64_t mask_stride, float scale, float *out, int64_t out_stride, scratch s) {
  int64_t keys_padded = (keys + 31) / 32 * 32, queries_padded = (queries + AMX_ROWS - 1) / AMX_ROWS * AMX_ROWS;
  int64_t pairs = dim / 2, key_pairs = keys_padded / 2;
  pack_head(q, k, v, queries, queries_padded, keys, keys_padded, dim, q_stride, k_stride, v_stride, scale, s);
  for (int64_t i0 = 0; i0 < queries_padded; i0 += AMX_ROWS) {
    for (int64_t j0 = 0; j0 < keys_padded; j0 += 64) { /* scores: 64 keys a pass (32 in the last) */
      int two = keys_padded - j0 < 64;
      zero_tiles(two);
      AMX_PRODUCT(s.qp + i0 * pairs, 16, pairs * 4, s.kp + j0, 16 * keys_padded, keys_padded * 4, pairs / 16, two);
      store_tiles(s.scores + j0, keys_padded * 4, two);
    }
    float inverse[AMX_ROWS];
    int64_t rows = queries - i0 < AMX_ROWS ? queries - i0 : AMX_ROWS;
    for (int64_t r = 0; r < AMX_ROWS; r++)
      inverse[r] = softmax_row(s.scores + r * keys_padded, mask && r < rows ? mask + (i0 + r) * mask_stride : NULL,
                               r < rows ? keys : 0, keys_padded, s.pp + r * key_pairs);
    for (int64_t d0 = 0; d0 < dim; d0 += 64) { /* output: 64 head features a pass (32 in the last) */
      int two = dim - d0 < 64, width = two ? 32 : 64;
      zero_tiles(two);
      AMX_PRODUCT(s.pp, 16, key_pairs * 4, s.vp + d0, 16 * dim, dim * 4, key_pairs / 16, two);
      store_tiles(s.out, 64 * 4, two);
      for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < width; c += 16)
          _mm512_storeu_ps(out + (i0 + r) * out_stride + d0 + c,
                           _mm512_mul_ps(_mm512_loadu_ps(s.out + r * 64 + c), _mm512_set1_ps(inverse[r])));
    }
  }
}
#else
#define attend_amx attend /* never chosen: amx_ready() is 0 */
#endif
#endif

/* out (batch, queries, heads, dim) = attention of q (batch, heads, queries, dim) over k and v (batch,
 * heads, keys, dim), each with its own strides [batch, head, position]; mask (bytes, 0 = masked)
 * indexed [b][h][i][j] by its strides (0 where it broadcasts), unit stride along keys, or NULL.
 * dim must be a multiple of 32. Returns 0; -1 without memory; -2 where this build has no bf16 dot
 * products. */
int bf16_attention(const float *q, const float *k, const float *v, const uint8_t *mask, int64_t batch, int64_t heads,
                   int64_t queries, int64_t keys, int64_t dim, const int64_t *q_strides, const int64_t *k_strides,
                   const int64_t *v_strides, const int64_t *mask_strides, float scale, float *out, int64_t threads) {
#if BF16_ATTENTION
  int64_t keys_padded = (keys + 31) / 32 * 32, queries_padded = (queries + AMX_ROWS - 1) / AMX_ROWS * AMX_ROWS;
  int failed = 0, amx = amx_ready(); /* asked here, before the threads start */
#pragma omp parallel num_threads(threads) reduction(| : failed) if (threads > 1)
  {
    scratch s = {/* kp, vp, qp (bf16 pairs), pp (AMX_ROWS >= ROWS rows of bf16 pairs), scores (as many rows
                    of fp32), out (AMX_ROWS x 64 fp32) */
                 aligned_alloc(64, (size_t)(dim * keys_padded * 2)), aligned_alloc(64, (size_t)(keys_padded * dim * 2)),
                 aligned_alloc(64, (size_t)(queries_padded * dim * 2)),
                 aligned_alloc(64, (size_t)(AMX_ROWS * keys_padded * 2)),
                 aligned_alloc(64, (size_t)(AMX_ROWS * keys_padded * 4)), aligned_alloc(64, AMX_ROWS * 64 * 4)};
    int ready = s.kp && s.vp && s.qp && s.pp && s.scores && s.out;
#if AMX_ATTENTION
    if (amx) configure_tiles(); /* per thread: the tile configuration is a thread's state */
#endif
#pragma omp for schedule(static) /* met by every thread, ready or not: none waits at its barrier forever */
    for (int64_t pair = 0; pair < batch * heads; pair++) {
      int64_t b = pair / heads, h = pair % heads;
      if (!ready) {
        failed = 1;
        continue;
      }
      (amx ? attend_amx : attend)(
          q + b * q_strides[0] + h * q_strides[1], k + b * k_strides[0] + h * k_strides[1],
          v + b * v_strides[0] + h * v_strides[1], mask ? mask + b * mask_strides[0] + h * mask_strides[1] : NULL,
          queries, keys, dim, q_strides[2], k_strides[2], v_strides[2], mask ? mask_strides[2] : 0, scale,
          out + (b * queries * heads + h) * dim, heads * dim, s);
    }
#if AMX_ATTENTION
    if (amx) _tile_release();
#endif
    free(s.out);
    free(s.kp);
    free(s.vp);
    free(s.qp);
    free(s.pp);
    free(s.scores);
  }
  return failed ? -1 : 0;
#else
  (void)q, (void)k, (void)v, (void)mask, (void)batch, (void)heads, (void)queries, (void)keys, (void)dim;
  (void)q_strides, (void)k_strides, (void)v_strides, (void)mask_strides, (void)scale, (void)out, (void)threads;
  return -2;
#endif
}
