/* Vector pieces the toolkit's C kernels share: exp, GELU and a square transpose, for AVX-512 (16
 * lanes) and AVX2 with FMA (8 lanes; the same polynomials). */
#ifndef SPARSE_TRANSFER_VECTOR_MATH_H
#define SPARSE_TRANSFER_VECTOR_MATH_H
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#define VECTOR_MATH_AVX2 1
#else
#define VECTOR_MATH_AVX2 0
#endif

/* Cephes expf: exp(n ln2 + r) = 2^n (1 + r + r^2 P(r)), ln 2 in two parts; P's coefficients highest first. */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HIGH 0.693359375f
#define EXP_LN2_LOW -2.12194440e-4f
static const float EXP_POLY[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                  4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
/* Abramowitz & Stegun 7.1.26: erf(a) = 1 - t P(t) exp(-a^2), t = 1 / (1 + ERF_T a); P highest first. */
#define ERF_T 0.3275911f
static const float ERF_POLY[5] = {1.061405429f, -1.453152027f, 1.421413741f, -0.284496736f, 0.254829592f};

#ifdef __AVX512F__

/* exp(v) for v <= 0 (Cephes expf: v = n ln2 + r, a degree-6 polynomial in r, times 2^n); relative
 * error ~1e-7; below -87 the result is 0. */
static inline __m512 exp_nonpositive16(__m512 v) {
  v = _mm512_max_ps(v, _mm512_set1_ps(-87.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(EXP_LOG2E)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HIGH), v);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LOW), r);
  __m512 p = _mm512_set1_ps(EXP_POLY[0]);
  for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_POLY[i]));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

/* GELU(x) = x / 2 * (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (absolute error below
 * 1.5e-7, so GELU within 1e-7 * |x| of the exact value). */
static inline __m512 gelu16(__m512 x) {
  __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
  __m512 a = _mm512_abs_ps(z);
  __m512 d = _mm512_fmadd_ps(a, _mm512_set1_ps(ERF_T), _mm512_set1_ps(1.0f));
  __m512 t = _mm512_rcp14_ps(d); /* 1 / d to 2^-14, then one Newton step (a division costs more) */
  t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
  __m512 p = _mm512_set1_ps(ERF_POLY[0]);
  for (int i = 1; i < 5; i++) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERF_POLY[i]));
  p = _mm512_mul_ps(p, t);
  __m512 erf_abs = _mm512_fnmadd_ps(p, exp_nonpositive16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)),
                                    _mm512_set1_ps(1.0f));
  __mmask16 negative = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  __m512 erf = _mm512_mask_sub_ps(erf_abs, negative, _mm512_setzero_ps(), erf_abs);
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(erf, _mm512_set1_ps(1.0f)));
}

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

#if VECTOR_MATH_AVX2
/* exp(v) for v <= 0, as exp_nonpositive16: 2^n is built in the exponent bits (AVX2 has no scalef);
 * v is clamped at -87, so n >= -126 and 2^n stays a normal float. */
static inline __m256 exp_nonpositive8(__m256 v) {
  v = _mm256_max_ps(v, _mm256_set1_ps(-87.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(EXP_LOG2E)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HIGH), v);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LOW), r);
  __m256 p = _mm256_set1_ps(EXP_POLY[0]);
  for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_POLY[i]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
}

/* GELU as gelu16 (erf by Abramowitz & Stegun 7.1.26); 1 / d from rcp (2^-12) and one Newton step. */
static inline __m256 gelu8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
  __m256 a = _mm256_andnot_ps(sign, z);
  __m256 d = _mm256_fmadd_ps(a, _mm256_set1_ps(ERF_T), _mm256_set1_ps(1.0f));
  __m256 t = _mm256_rcp_ps(d);
  t = _mm256_mul_ps(t, _mm256_fnmadd_ps(d, t, _mm256_set1_ps(2.0f)));
  __m256 p = _mm256_set1_ps(ERF_POLY[0]);
  for (int i = 1; i < 5; i++) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(ERF_POLY[i]));
  p = _mm256_mul_ps(p, t);
  __m256 erf_abs = _mm256_fnmadd_ps(p, exp_nonpositive8(_mm256_fnmadd_ps(a, a, _mm256_setzero_ps())),
                                    _mm256_set1_ps(1.0f));
  __m256 erf = _mm256_xor_ps(erf_abs, _mm256_and_ps(z, sign)); /* erf(-z) = -erf(z) */
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(erf, _mm256_set1_ps(1.0f)));
}

/* r[i] holds 8 values of row i; afterwards r[e] holds value e of every row (an 8 x 8 transpose). */
static inline void transpose8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; h++) { /* rows 4h .. 4h + 3: s[4h + k] holds columns k and k + 4 */
    s[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
    s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
  }
  for (int k = 0; k < 4; k++) {
    r[k] = _mm256_permute2f128_ps(s[k], s[4 + k], 0x20);
    r[4 + k] = _mm256_permute2f128_ps(s[k], s[4 + k], 0x31);
  }
}

/* The sum and the minimum / maximum of 8 lanes. */
static inline float sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
static inline float min8(__m256 v) {
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_min_ss(s, _mm_movehdup_ps(s)));
}
static inline float max8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
#endif
#endif
