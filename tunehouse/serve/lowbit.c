/* y = x @ W.T for fp32 rows x and a weight W held as 4-bit or 8-bit integers, for AVX2 CPUs (AMX tiles
 * where the CPU has them: see amx_matmul below).
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

static int amx_matmul(const float *x, const uint8_t *weight, const float *steps, const float *minimums, float *y,
                      int rows, int n_size, int k_size, int bits, int threads);
static int use_amx = 0;

/* Returns 0, or -1 when a thread's buffer could not be allocated. */
int lowbit_matmul(const float *x, const uint8_t *weight, const float *steps, const float *minimums, float *y,
                  int rows, int n_size, int k_size, int bits, int threads) {
    if (use_amx) return amx_matmul(x, weight, steps, minimums, y, rows, n_size, k_size, bits, threads);
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

/* The same products with AMX tiles, where the CPU has them (Xeons since Sapphire Rapids). The integers of a
 * weight are exact in bf16, so a tile multiplies the rows, rounded to bf16 (round to nearest even), by the
 * integers of one group of 32 inputs (a tile product sums in fp32), and the group's step and minimum are
 * applied after it in fp32: y += step * (x . q) + minimum * (sum of x over the group), the group's
 * weights exactly. A tile product gives each output the same chain of operations whatever the other rows
 * of its tile hold, so rows go in tiles of 16 (the last padded with zeros) and every product, one row's
 * included, takes this path: a row gets the same bits alone or in any batch. A B tile holds in its row p,
 * for each of the 16 columns, the integers of inputs 2p and 2p + 1 side by side, as bf16. Each strip's
 * tiles are expanded once and every tile of 16 rows reads them. */
#include <cpuid.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
#define TILE_ROWS 16
#define TILE_BYTES 1024
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

struct tile_config {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64)));

/* one group of a strip (inputs group * 32 ...) as a B tile of bf16 integers */
AMX_TARGET static void expand_tile(const uint8_t *strip, int bits, int group, uint8_t *tile) {
    if (bits == 4) {
        /* inputs k and k + 1 are 16 bytes: byte j of each holds column j (low nibble) and j + 8 (high) */
        __m512i pick = _mm512_set_epi64(0x800f8007800e8006LL, 0x800d8005800c8004LL, 0x800b8003800a8002LL,
                                        0x8009800180088000LL, 0x800f8007800e8006LL, 0x800d8005800c8004LL,
                                        0x800b8003800a8002LL, 0x8009800180088000LL);  /* word 2c + i: byte
                                        8i + c % 8 of each 16 (the high byte zero) */
        __m512i shifts = _mm512_set_epi64(0x0004000400040004LL, 0x0004000400040004LL, 0x0004000400040004LL,
                                          0x0004000400040004LL, 0, 0, 0, 0);  /* columns 8..15: high nibbles */
        __m512i bf16_of = _mm512_set_epi64(0, 0, 0, 0, 0x4170416041504140LL, 0x4130412041104100LL,
                                           0x40e040c040a04080LL, 0x404040003f800000LL);  /* words v: bf16 of v */
        for (int pair = 0; pair < GROUP / 2; pair++) {
            const uint8_t *bytes = strip + (size_t)(group * GROUP + 2 * pair) * 8;
            __m512i words = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)bytes)), pick);
            __m512i q = _mm512_and_si512(_mm512_srlv_epi16(words, shifts), _mm512_set1_epi16(15));
            _mm512_store_si512((__m512i *)(tile + pair * 64), _mm512_permutexvar_epi16(q, bf16_of));
        }
    } else {
        /* inputs k and k + 1 are 16 signed bytes each, columns 0..15 */
        __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                              23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        for (int pair = 0; pair < GROUP / 2; pair++) {
            const uint8_t *bytes = strip + (size_t)(group * GROUP + 2 * pair) * 16;
            __m512 even = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)bytes)));
            __m512 odd = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(bytes + 16))));
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(odd, even);
            _mm512_store_si512((__m512i *)(tile + pair * 64), _mm512_permutexvar_epi16(interleave, both));
        }
    }
}

/* a tile of up to 16 rows (bf16, k_size apart; `sums` their groups' sums) against a strip's tiles, into y's
 * 16 columns; four groups at a time, each into its own accumulator tile (0..3), their A and B tiles
 * alternating between 4, 5 and 6, 7. With `strip`, each four groups' tiles are expanded first (one tile of
 * rows: the tiles are read while in the nearest cache); without, `tiles` holds the strip's expanded. */
#define TILE_GROUPS 4
AMX_TARGET static void tile_rows(const uint16_t *a, const float *sums, int k_size, const uint8_t *strip, int bits,
                                 uint8_t *tiles, const float *steps, const float *minimums, float *y, int rows,
                                 int n_size) {
    const int groups = k_size / GROUP;
    float products[TILE_GROUPS][TILE_ROWS * STRIP] __attribute__((aligned(64)));
    __m512 acc[TILE_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = _mm512_setzero_ps();
    for (int first = 0; first < groups; first += TILE_GROUPS) {
        const int n = groups - first < TILE_GROUPS ? groups - first : TILE_GROUPS;
        for (int i = 0; strip && i < n; i++) expand_tile(strip, bits, first + i, tiles + (size_t)(first + i) * TILE_BYTES);
#define TILE_GROUP(i, A, B)                                                                         \
        if (n > i) {                                                                               \
            _tile_zero(i);                                                                         \
            _tile_loadd(A, a + (first + i) * GROUP, k_size * 2);                                    \
            _tile_loadd(B, tiles + (size_t)(first + i) * TILE_BYTES, 64);                          \
            _tile_dpbf16ps(i, A, B);                                                               \
            _tile_stored(i, products[i], 64);                                                      \
        }
        TILE_GROUP(0, 4, 5) TILE_GROUP(1, 6, 7) TILE_GROUP(2, 4, 5) TILE_GROUP(3, 6, 7)
#undef TILE_GROUP
        for (int i = 0; i < n; i++) {
            const int group = first + i;
            __m512 step = _mm512_loadu_ps(steps + group * STRIP), minimum = _mm512_loadu_ps(minimums + group * STRIP);
            for (int r = 0; r < rows; r++) {
                acc[r] = _mm512_fmadd_ps(_mm512_load_ps(products[i] + r * STRIP), step, acc[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(sums[(size_t)r * groups + group]), minimum, acc[r]);
            }
        }
    }
    for (int r = 0; r < rows; r++) _mm512_storeu_ps(y + (size_t)r * n_size, acc[r]);
}

AMX_TARGET static int amx_matmul(const float *x, const uint8_t *weight, const float *steps, const float *minimums,
                                 float *y, int rows, int n_size, int k_size, int bits, int threads) {
    const int groups = k_size / GROUP, strips = n_size / STRIP;
    /* tiles of `tile_rows` rows: fewer than 16 rows make one tile of their number (a row's outputs are the
       same in a tile of any height); more are padded to whole tiles of 16 */
    const int tile_rows_n = rows < TILE_ROWS ? rows : TILE_ROWS;
    const int padded = (rows + tile_rows_n - 1) / tile_rows_n * tile_rows_n;
    const size_t strip_bytes = (size_t)k_size * STRIP * bits / 8;
    uint16_t *a = aligned_alloc(64, (size_t)padded * k_size * sizeof(uint16_t));
    float *sums = malloc((size_t)rows * groups * sizeof(float));
    int failed = !a || !sums;
    #pragma omp parallel num_threads(threads) reduction(|:failed)
    if (a && sums) {
        /* the rows in bf16, and each group's sum of those bf16 values (in fp32, in a fixed order) */
        #pragma omp for schedule(static)
        for (int r = 0; r < padded; r++) {
            for (int k = 0; k < k_size; k += GROUP) {
                __m256i low = _mm256_setzero_si256(), high = _mm256_setzero_si256();
                if (r < rows) {
                    low = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + (size_t)r * k_size + k));
                    high = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + (size_t)r * k_size + k + 16));
                    __m512 widened = _mm512_add_ps(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(low), 16)),
                                                   _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(high), 16)));
                    sums[(size_t)r * groups + k / GROUP] = _mm512_reduce_add_ps(widened);
                }
                _mm256_storeu_si256((__m256i *)(a + (size_t)r * k_size + k), low);
                _mm256_storeu_si256((__m256i *)(a + (size_t)r * k_size + k + 16), high);
            }
        }
        struct tile_config config = {.palette = 1};
        for (int t = 0; t < 8; t++) {  /* accumulators 0..3 and A tiles 4, 6: a tile's rows; B tiles 5, 7: 16 */
            config.rows[t] = t < 4 || t % 2 == 0 ? tile_rows_n : TILE_ROWS;
            config.bytes_per_row[t] = 64;
        }
        _tile_loadconfig(&config);
        uint8_t *tiles = aligned_alloc(64, (size_t)groups * TILE_BYTES);
        if (!tiles) failed = 1;
        #pragma omp for schedule(static)
        for (int s = 0; s < strips; s++) {
            if (!tiles) continue;
            const uint8_t *strip = weight + s * strip_bytes;
            if (rows <= TILE_ROWS) {
                tile_rows(a, sums, k_size, strip, bits, tiles, steps + (size_t)s * groups * STRIP,
                          minimums + (size_t)s * groups * STRIP, y + s * STRIP, rows, n_size);
                continue;
            }
            for (int group = 0; group < groups; group++)
                expand_tile(strip, bits, group, tiles + (size_t)group * TILE_BYTES);
            for (int first = 0; first < rows; first += TILE_ROWS)
                tile_rows(a + (size_t)first * k_size, sums + (size_t)first * groups, k_size, NULL, bits, tiles,
                          steps + (size_t)s * groups * STRIP, minimums + (size_t)s * groups * STRIP,
                          y + (size_t)first * n_size + s * STRIP, rows - first < TILE_ROWS ? rows - first : TILE_ROWS,
                          n_size);
        }
        free(tiles);
        _tile_release();
    }
    free(a);
    free(sums);
    return failed ? -1 : 0;
}

/* Products through AMX from now on (on: 1), where the CPU has AMX-BF16 and AVX-512 BF16 and the kernel lets
 * this process use the tile registers; else, or with on 0, lowbit.c's fp32 kernels. Returns whether AMX is
 * used. */
int lowbit_use_amx(int on) {
    unsigned a, b, c, d;
    use_amx = 0;
    if (!on || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int has = (d >> 22 & 1) && (d >> 24 & 1) && (b >> 16 & 1) && (b >> 30 & 1) && (b >> 31 & 1);
    if (!has || !__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a >> 5 & 1)) return 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) return 0;
    use_amx = 1;
    return 1;
}

int lowbit_uses_amx(void) { return use_amx; }
