/* y = x @ W.T for fp32 rows x and a weight W held as 4-bit or 8-bit integers, for AVX2 CPUs.
 *
 * W is stored in strips of 16 output columns. Within a strip, for each input position k, the 16 integers
 * of columns 0..15: as 8 bytes for 4 bits (byte j holds column j in its low nibble and column j + 8 in its
 * high one), as 16 signed bytes for 8 bits. Each group of 32 input positions of a column has a step and a
 * minimum (GGUF's Q4_1; 8 bits as Q8_0 with minimum 0): the weight is q * step + minimum, in fp32.
 *
 * Every output is one chain of fused multiply-adds over k in order, whatever the number of rows and
 * wherever the row sits among them: a row gets the same bits alone or in any batch. Up to 6 rows, the
 * weights are expanded to fp32 in registers as they are read (one read of the small weights: decoding one
 * stream); more rows expand a strip once into a buffer that every block of 6 rows then reads (the work of
 * expanding is shared by all rows: decoding many streams). Strips are shared out among OpenMP threads. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#define STRIP 16
#define GROUP 32
#define ROW_BLOCK 6

/* columns 0..7 and 8..15 of strip position k, as fp32 weights */
static inline void expand(const uint8_t *strip, int bits, int k, __m256 step0, __m256 step1, __m256 min0,
                          __m256 min1, __m256 *w0, __m256 *w1) {
    __m256i q0, q1;
    if (bits == 4) {
        __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(strip + (size_t)k * 8)));
        q0 = _mm256_and_si256(bytes, _mm256_set1_epi32(15));
        q1 = _mm256_srli_epi32(bytes, 4);
    } else {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(strip + (size_t)k * 16));
        q0 = _mm256_cvtepi8_epi32(bytes);
        q1 = _mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8));
    }
    *w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), step0, min0);
    *w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), step1, min1);
}

#define EACH_ROW(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5)
#define ZERO(i) __m256 acc##i##_0 = _mm256_setzero_ps(), acc##i##_1 = _mm256_setzero_ps();
#define ADD(i) if (rows > i) { __m256 xi = _mm256_broadcast_ss(x + (size_t)(i) * k_size + k); \
    acc##i##_0 = _mm256_fmadd_ps(xi, w0, acc##i##_0); acc##i##_1 = _mm256_fmadd_ps(xi, w1, acc##i##_1); }
#define STORE(i) if (rows > i) { _mm256_storeu_ps(y + (size_t)(i) * n_size, acc##i##_0); \
    _mm256_storeu_ps(y + (size_t)(i) * n_size + 8, acc##i##_1); }

/* ROWS rows against one strip, expanding its integers as they are read (EXPANDED 0) or reading the strip
   already expanded into `expanded` (EXPANDED 1); named block_<rows>_<bits or 0 for expanded> */
#define BLOCK(ROWS, BITS, EXPANDED)                                                                          \
static void block_##ROWS##_##BITS(const float *x, int k_size, const uint8_t *strip, const float *steps,     \
                                  const float *minimums, const float *expanded, float *y, int n_size) {     \
    const int rows = ROWS;                                                                                  \
    EACH_ROW(ZERO)                                                                                          \
    for (int group = 0; group < k_size / GROUP; group++) {                                                  \
        __m256 step0, step1, min0, min1;                                                                    \
        if (!EXPANDED) {                                                                                    \
            step0 = _mm256_loadu_ps(steps + group * STRIP); step1 = _mm256_loadu_ps(steps + group * STRIP + 8); \
            min0 = _mm256_loadu_ps(minimums + group * STRIP);                                              \
            min1 = _mm256_loadu_ps(minimums + group * STRIP + 8);                                          \
        }                                                                                                   \
        for (int k = group * GROUP; k < (group + 1) * GROUP; k++) {                                         \
            __m256 w0, w1;                                                                                  \
            if (EXPANDED) {                                                                                 \
                w0 = _mm256_loadu_ps(expanded + (size_t)k * STRIP);                                        \
                w1 = _mm256_loadu_ps(expanded + (size_t)k * STRIP + 8);                                    \
            } else {                                                                                        \
                expand(strip, BITS, k, step0, step1, min0, min1, &w0, &w1);                                \
            }                                                                                               \
            EACH_ROW(ADD)                                                                                   \
        }                                                                                                   \
    }                                                                                                       \
    EACH_ROW(STORE)                                                                                         \
}

BLOCK(1, 4, 0) BLOCK(2, 4, 0) BLOCK(3, 4, 0) BLOCK(4, 4, 0) BLOCK(5, 4, 0) BLOCK(6, 4, 0)
BLOCK(1, 8, 0) BLOCK(2, 8, 0) BLOCK(3, 8, 0) BLOCK(4, 8, 0) BLOCK(5, 8, 0) BLOCK(6, 8, 0)
BLOCK(1, 0, 1) BLOCK(2, 0, 1) BLOCK(3, 0, 1) BLOCK(4, 0, 1) BLOCK(5, 0, 1) BLOCK(6, 0, 1)

typedef void (*block_fn)(const float *, int, const uint8_t *, const float *, const float *, const float *,
                         float *, int);
static const block_fn direct4[ROW_BLOCK + 1] = {0, block_1_4, block_2_4, block_3_4, block_4_4, block_5_4, block_6_4};
static const block_fn direct8[ROW_BLOCK + 1] = {0, block_1_8, block_2_8, block_3_8, block_4_8, block_5_8, block_6_8};
static const block_fn from_expanded[ROW_BLOCK + 1] = {0, block_1_0, block_2_0, block_3_0, block_4_0, block_5_0,
                                                      block_6_0};

/* Returns 0, or -1 when a thread's buffer could not be allocated. */
int lowbit_matmul(const float *x, const uint8_t *weight, const float *steps, const float *minimums, float *y,
                  int rows, int n_size, int k_size, int bits, int threads) {
    const int groups = k_size / GROUP, strips = n_size / STRIP;
    const size_t strip_bytes = (size_t)k_size * STRIP * bits / 8;
    int failed = 0;
    #pragma omp parallel num_threads(threads) reduction(|:failed)
    {
        float *expanded = rows > ROW_BLOCK ? malloc((size_t)k_size * STRIP * sizeof(float)) : NULL;
        if (rows > ROW_BLOCK && !expanded) failed = 1;
        #pragma omp for schedule(static)
        for (int s = 0; s < strips; s++) {
            const uint8_t *strip = weight + s * strip_bytes;
            const float *strip_steps = steps + (size_t)s * groups * STRIP;
            const float *strip_minimums = minimums + (size_t)s * groups * STRIP;
            float *out = y + (size_t)s * STRIP;
            if (rows <= ROW_BLOCK) {
                (bits == 4 ? direct4 : direct8)[rows](x, k_size, strip, strip_steps, strip_minimums, NULL, out, n_size);
                continue;
            }
            if (!expanded) continue;
            for (int group = 0; group < groups; group++) {
                __m256 step0 = _mm256_loadu_ps(strip_steps + group * STRIP);
                __m256 step1 = _mm256_loadu_ps(strip_steps + group * STRIP + 8);
                __m256 min0 = _mm256_loadu_ps(strip_minimums + group * STRIP);
                __m256 min1 = _mm256_loadu_ps(strip_minimums + group * STRIP + 8);
                for (int k = group * GROUP; k < (group + 1) * GROUP; k++) {
                    __m256 w0, w1;
                    expand(strip, bits, k, step0, step1, min0, min1, &w0, &w1);
                    _mm256_storeu_ps(expanded + (size_t)k * STRIP, w0);
                    _mm256_storeu_ps(expanded + (size_t)k * STRIP + 8, w1);
                }
            }
            for (int first = 0; first < rows; first += ROW_BLOCK) {
                int block = rows - first < ROW_BLOCK ? rows - first : ROW_BLOCK;
                from_expanded[block](x + (size_t)first * k_size, k_size, NULL, NULL, NULL, expanded,
                                     out + (size_t)first * n_size, n_size);
            }
        }
        free(expanded);
    }
    return failed ? -1 : 0;
}
