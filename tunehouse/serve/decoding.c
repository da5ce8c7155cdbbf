/* The small operations of a decoding step around its matrix products, for fp32 rows on AVX2 CPUs.
 *
 * A decoding step of one stream runs ~50 small operations per layer around its 4 products (norms, the
 * rotation of q and k, the cache writes, attention, SiLU); as torch calls they cost more in dispatch than
 * in arithmetic (~7 of a ~16 ms step for the default model). Here each layer needs four calls: the
 * residual add fused with the next norm (twice), attention (rotation and cache write included), and SiLU
 * times up. `decode_layers` makes all of a step's calls from here where every product is lowbit.c's.
 *
 * Every row is computed on its own, by one thread, in a fixed order: a row gets the same bits alone or in
 * any batch. Widths must be multiples of 8 (one AVX2 register of fp32), head widths at most 256. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the sums of 8 registers, lane i holding the sum of register i */
static inline __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6, __m256 a7) {
    __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
}

/* e^x within ~1 ulp for x in [-87.3, 88.3], clamped there (Cephes' expf: 2^n times a polynomial) */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i power = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(power));
}

/* A KV cache holds fp32 or fp16 (F16C's conversions, rounding to nearest even as torch does) */
static inline __m256 load_fp16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline void store_fp16(uint16_t *p, __m256 v) {
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* 8 values of a cache at element `index`; `fp16` is a constant where this is inlined */
static inline __m256 load_cached(const void *cache, size_t index, int fp16) {
    return fp16 ? load_fp16((const uint16_t *)cache + index) : _mm256_loadu_ps((const float *)cache + index);
}

static inline void store_cached(void *cache, size_t index, __m256 v, int fp16) {
    if (fp16) store_fp16((uint16_t *)cache + index, v);
    else _mm256_storeu_ps((float *)cache + index, v);
}

/* x += delta (when given), then out = x / sqrt(mean(x^2) + eps) * weight, row by row (RMSNorm) */
void add_rms_norm(float *x, const float *delta, const float *weight, float *out, int rows, int width, float eps) {
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * width, *o = out + (size_t)r * width;
        const float *d = delta ? delta + (size_t)r * width : NULL;
        __m256 squares = _mm256_setzero_ps();
        for (int k = 0; k < width; k += 8) {
            __m256 v = _mm256_loadu_ps(xr + k);
            if (d) {
                v = _mm256_add_ps(v, _mm256_loadu_ps(d + k));
                _mm256_storeu_ps(xr + k, v);
            }
            squares = _mm256_fmadd_ps(v, v, squares);
        }
        __m256 scale = _mm256_set1_ps(1.0f / sqrtf(hsum(squares) / width + eps));
        for (int k = 0; k < width; k += 8)
            _mm256_storeu_ps(o + k, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + k), scale),
                                                  _mm256_loadu_ps(weight + k)));
    }
}

/* out = silu(gate) * up for rows of [gate | up], each `width` wide */
void silu_mul(const float *gate_up, float *out, int rows, int width) {
    for (int r = 0; r < rows; r++) {
        const float *gate = gate_up + (size_t)r * 2 * width, *up = gate + width;
        float *o = out + (size_t)r * width;
        for (int k = 0; k < width; k += 8) {
            __m256 g = _mm256_loadu_ps(gate + k);
            __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(_mm256_setzero_ps(), g))));
            _mm256_storeu_ps(o + k, _mm256_mul_ps(silu, _mm256_loadu_ps(up + k)));
        }
    }
}

/* dst = src rotated by the rotary embedding of one position: src * cos + (src, halves swapped) * signed_sin,
 * each product rounded on its own (no fused multiply-add: built with -ffp-contract=off), as torch computes it
 * for prompts: a key in the cache has the same bits whichever path wrote it */
static inline void rotate(const float *src, const float *cos, const float *signed_sin, float *dst, int d) {
    const int half = d / 2;
    if (half % 8) {  /* halves not in whole registers (a head of 8 or 24) */
        for (int k = 0; k < d; k++) dst[k] = src[k] * cos[k] + src[(k + half) % d] * signed_sin[k];
        return;
    }
    for (int k = 0; k < d; k += 8) {
        __m256 swapped = _mm256_loadu_ps(src + (k < half ? k + half : k - half));
        _mm256_storeu_ps(dst + k, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(src + k), _mm256_loadu_ps(cos + k)),
                                                _mm256_mul_ps(swapped, _mm256_loadu_ps(signed_sin + k))));
    }
}

/* q . keys[j] * scale for j < n, into scores (keys fp32 or fp16) */
static inline void dot_keys(const float *q, const void *keys, int64_t n, int d, float scale, float *scores, int fp16) {
    int64_t j = 0;
    const __m256 scaling = _mm256_set1_ps(scale);
    for (; j + 8 <= n; j += 8) {  /* 8 keys at a time: one reduction for 8 scores */
        const size_t k = (size_t)j * d;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int i = 0; i < d; i += 8) {
            __m256 qi = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(qi, load_cached(keys, k + i, fp16), a0);
            a1 = _mm256_fmadd_ps(qi, load_cached(keys, k + d + i, fp16), a1);
            a2 = _mm256_fmadd_ps(qi, load_cached(keys, k + 2 * d + i, fp16), a2);
            a3 = _mm256_fmadd_ps(qi, load_cached(keys, k + 3 * d + i, fp16), a3);
            a4 = _mm256_fmadd_ps(qi, load_cached(keys, k + 4 * d + i, fp16), a4);
            a5 = _mm256_fmadd_ps(qi, load_cached(keys, k + 5 * d + i, fp16), a5);
            a6 = _mm256_fmadd_ps(qi, load_cached(keys, k + 6 * d + i, fp16), a6);
            a7 = _mm256_fmadd_ps(qi, load_cached(keys, k + 7 * d + i, fp16), a7);
        }
        _mm256_storeu_ps(scores + j, _mm256_mul_ps(hsum8(a0, a1, a2, a3, a4, a5, a6, a7), scaling));
    }
    for (; j < n; j++) {
        __m256 a = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_cached(keys, (size_t)j * d + i, fp16), a);
        scores[j] = hsum(a) * scale;
    }
}

/* scores[j] = exp(scores[j] - max), returning their sum */
static float exponentiate(float *scores, int64_t n) {
    float top = scores[0];
    for (int64_t j = 1; j < n; j++) top = scores[j] > top ? scores[j] : top;
    const __m256 high = _mm256_set1_ps(top);
    __m256 total = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(scores + j), high));
        _mm256_storeu_ps(scores + j, e);
        total = _mm256_add_ps(total, e);
    }
    float sum = hsum(total);
    for (; j < n; j++) {
        scores[j] = _mm256_cvtss_f32(exp256(_mm256_set1_ps(scores[j] - top)));
        sum += scores[j];
    }
    return sum;
}

/* out = sum over j < n of weights[j] * values[j] (fp32 or fp16), divided by total; 32 columns at a time */
static inline void weigh_values(const float *weights, const void *values, int64_t n, int d, float total, float *out,
                                int fp16) {
    const __m256 inverse = _mm256_set1_ps(1.0f / total);
    for (int i = 0; i < d; i += 32) {
        const int vectors = d - i >= 32 ? 4 : (d - i) / 8;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t j = 0; j < n; j++) {
            const size_t v = (size_t)j * d + i;
            __m256 w = _mm256_set1_ps(weights[j]);
            a0 = _mm256_fmadd_ps(w, load_cached(values, v, fp16), a0);
            if (vectors > 1) a1 = _mm256_fmadd_ps(w, load_cached(values, v + 8, fp16), a1);
            if (vectors > 2) a2 = _mm256_fmadd_ps(w, load_cached(values, v + 16, fp16), a2);
            if (vectors > 3) a3 = _mm256_fmadd_ps(w, load_cached(values, v + 24, fp16), a3);
        }
        _mm256_storeu_ps(out + i, _mm256_mul_ps(a0, inverse));
        if (vectors > 1) _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(a1, inverse));
        if (vectors > 2) _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(a2, inverse));
        if (vectors > 3) _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(a3, inverse));
    }
}

/* one query head's attention over n positions of its key/value head */
static void attend_head(const float *q, const void *keys, const void *values, int64_t n, int d, float scale,
                        float *scores, float *out, int fp16) {
    if (fp16) {
        dot_keys(q, keys, n, d, scale, scores, 1);
        weigh_values(scores, values, n, d, exponentiate(scores, n), out, 1);
    } else {
        dot_keys(q, keys, n, d, scale, scores, 0);
        weigh_values(scores, values, n, d, exponentiate(scores, n), out, 0);
    }
}

/* Attention for rows that are each a token at a position of a slot: a decoding step's rows, or prompts'
 * tokens in order (each attends over the keys its prompt's earlier rows have just written: a causal
 * prefill). Row r's q, k and v are row r of qkv (query heads, then key heads, then
 * value heads, each d wide), its token at position positions[r] of slot slots[r]. Its keys, rotated, and
 * values are stored into the caches (slots, kv_heads, max_len, d; fp32, or fp16 where cache_fp16) at that
 * position; then each query head, rotated, attends over positions 0..positions[r] of its key/value head in
 * that slot (softmax of q . k * scale), into out (rows, heads * d). Returns 0, or -1 when a thread's scores
 * could not be allocated. */
int attend(const float *qkv, const float *cos, const float *signed_sin, const int64_t *positions,
           const int64_t *slots, void *cache_k, void *cache_v, int cache_fp16, float *out, int rows, int heads,
           int kv_heads, int d, int max_len, float scale, int threads) {
    const int width = (heads + 2 * kv_heads) * d, group = heads / kv_heads;
    int failed = 0;
    #pragma omp parallel num_threads(threads) reduction(|:failed)
    {
        #pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) {
            const int64_t p = positions[r];
            for (int h = 0; h < kv_heads; h++) {
                const size_t at = (((size_t)slots[r] * kv_heads + h) * max_len + p) * d;
                const float *k = qkv + (size_t)r * width + (size_t)(heads + h) * d, *v = k + (size_t)kv_heads * d;
                float rotated[256];
                rotate(k, cos + p * d, signed_sin + p * d, rotated, d);
                for (int i = 0; i < d; i += 8) {
                    store_cached(cache_k, at + i, _mm256_loadu_ps(rotated + i), cache_fp16);
                    store_cached(cache_v, at + i, _mm256_loadu_ps(v + i), cache_fp16);
                }
            }
        }
        float *scores = malloc((size_t)max_len * sizeof(float));
        if (!scores) failed = 1;
        const size_t element = cache_fp16 ? 2 : 4;
        #pragma omp for schedule(static)
        for (int unit = 0; unit < rows * heads; unit++) {
            if (!scores) continue;
            const int r = unit / heads, h = unit % heads;
            const int64_t p = positions[r];
            const size_t base = ((size_t)slots[r] * kv_heads + h / group) * max_len * d * element;
            float q[256];
            rotate(qkv + (size_t)r * width + (size_t)h * d, cos + p * d, signed_sin + p * d, q, d);
            attend_head(q, (const char *)cache_k + base, (const char *)cache_v + base, p + 1, d, scale, scores,
                        out + (size_t)r * heads * d + (size_t)h * d, cache_fp16);
        }
        free(scores);
    }
    return failed ? -1 : 0;
}

/* out += scale * B (A x) for one row x: a LoRA adapter's delta on one output of a projection; A (rank, in),
 * B given transposed (rank, out); the row on its own, in a fixed order (the same bits in any batch) */
static void lora_row(const float *x, const float *a, const float *b_t, float *out, int in_width, int rank,
                     int out_width, float scale) {
    float t[256];
    for (int j = 0; j < rank; j++) {
        __m256 sum = _mm256_setzero_ps();
        for (int k = 0; k < in_width; k += 8)
            sum = _mm256_fmadd_ps(_mm256_loadu_ps(a + (size_t)j * in_width + k), _mm256_loadu_ps(x + k), sum);
        t[j] = hsum(sum);
    }
    const __m256 s = _mm256_set1_ps(scale);
    for (int n = 0; n < out_width; n += 8) {
        __m256 u = _mm256_setzero_ps();
        for (int j = 0; j < rank; j++)
            u = _mm256_fmadd_ps(_mm256_set1_ps(t[j]), _mm256_loadu_ps(b_t + (size_t)j * out_width + n), u);
        _mm256_storeu_ps(out + n, _mm256_add_ps(_mm256_loadu_ps(out + n), _mm256_mul_ps(u, s)));
    }
}

/* lora_row for the listed rows of x (rows, in_width) into out, whose rows are out_stride apart (a part of a
 * fused projection's output); rank at most 256, widths multiples of 8 */
void lora_add(const float *x, const int64_t *rows, int n_rows, const float *a, const float *b_t, float *out,
              int in_width, int rank, int out_width, int out_stride, float scale) {
    for (int i = 0; i < n_rows; i++)
        lora_row(x + (size_t)rows[i] * in_width, a, b_t, out + (size_t)rows[i] * out_stride, in_width, rank,
                 out_width, scale);
}

/* Each row's adapter delta (row_adapters[r]: an index into `lora`, or -1) on part `part` of layer l, written
 * `offset` columns into out (rows, out_stride). lora[(adapter * layers_n + l) * 7 + part] holds the part's
 * A and transposed B addresses and its rank (A 0 where the adapter leaves the part alone); parts 0..6 are
 * q, k, v, o, gate, up, down. */
static void add_adapters(const float *in, float *out, int rows, int in_width, int out_stride, int offset,
                         int width, const int *row_adapters, const int64_t *lora, const float *scales,
                         int layers_n, int l, int part) {
    if (!row_adapters) return;
    for (int r = 0; r < rows; r++) {
        if (row_adapters[r] < 0) continue;
        const int64_t *entry = lora + (((size_t)row_adapters[r] * layers_n + l) * 7 + part) * 3;
        if (!entry[0]) continue;
        lora_row(in + (size_t)r * in_width, (const float *)entry[0], (const float *)entry[1],
                 out + (size_t)r * out_stride + offset, in_width, (int)entry[2], width, scales[row_adapters[r]]);
    }
}

int lowbit_matmul(const float *x, const uint8_t *weight, const float *steps, const float *minimums, float *y,
                  int rows, int n_size, int k_size, int bits, int threads);

/* Every layer of the decoder for rows that are each a token at a position of a slot, where every product's
 * weight is in lowbit.c's form and no row uses an adapter: the same calls, in the same order, as llama.py's
 * `_rows_in_c` makes one by one (so the same bits), without a Python call and its ~6 us for each of a
 * step's ~240 operations. x (rows, hidden) holds the embeddings on entry and the residual stream on exit;
 * normed gets its final norm. Per layer l, `layers[l * 16 ...]` points to: the input and post-attention norm
 * weights; the integers, steps and minimums of the q/k/v, output, gate/up and down products; the key and
 * value caches; `bits[l * 4 ...]` are those products' bits. qkv, attended, projected, gate_up, activated
 * are scratch rows of the products' widths. Rows with an adapter (row_adapters, lora and scales as
 * add_adapters reads them; row_adapters NULL: none) get its deltas after each product, as `_linear` adds
 * them. Returns 0, or -1 when a kernel could not allocate its buffers. */
int decode_layers(float *x, float *normed, const void *const *layers, const int *bits, int layers_n,
                  const float *final_norm, const float *cos, const float *signed_sin, const int64_t *positions,
                  const int64_t *slots, float *qkv, float *attended, float *projected, float *gate_up,
                  float *activated, const int *row_adapters, const int64_t *lora, const float *scales, int rows,
                  int hidden, int intermediate, int heads, int kv_heads, int d, int max_len, int cache_fp16,
                  float scale, float eps, int threads) {
    const int qkv_width = (heads + 2 * kv_heads) * d, q_width = heads * d, kv_width = kv_heads * d;
#define ADAPTERS(in, out, in_width, out_stride, offset, width, part) \
    add_adapters(in, out, rows, in_width, out_stride, offset, width, row_adapters, lora, scales, layers_n, l, part)
    add_rms_norm(x, NULL, layers[0], normed, rows, hidden, eps);
    for (int l = 0; l < layers_n; l++) {
        const void *const *p = layers + (size_t)l * 16;
        const int *b = bits + (size_t)l * 4;
        const float *following = l + 1 < layers_n ? layers[(size_t)(l + 1) * 16] : final_norm;
        if (lowbit_matmul(normed, p[2], p[3], p[4], qkv, rows, qkv_width, hidden, b[0], threads)) return -1;
        ADAPTERS(normed, qkv, hidden, qkv_width, 0, q_width, 0);
        ADAPTERS(normed, qkv, hidden, qkv_width, q_width, kv_width, 1);
        ADAPTERS(normed, qkv, hidden, qkv_width, q_width + kv_width, kv_width, 2);
        if (attend(qkv, cos, signed_sin, positions, slots, (void *)p[14], (void *)p[15], cache_fp16, attended,
                   rows, heads, kv_heads, d, max_len, scale, threads)
            || lowbit_matmul(attended, p[5], p[6], p[7], projected, rows, hidden, q_width, b[1], threads))
            return -1;
        ADAPTERS(attended, projected, q_width, hidden, 0, hidden, 3);
        add_rms_norm(x, projected, p[1], normed, rows, hidden, eps);
        if (lowbit_matmul(normed, p[8], p[9], p[10], gate_up, rows, 2 * intermediate, hidden, b[2], threads))
            return -1;
        ADAPTERS(normed, gate_up, hidden, 2 * intermediate, 0, intermediate, 4);
        ADAPTERS(normed, gate_up, hidden, 2 * intermediate, intermediate, intermediate, 5);
        silu_mul(gate_up, activated, rows, intermediate);
        if (lowbit_matmul(activated, p[11], p[12], p[13], projected, rows, hidden, intermediate, b[3], threads))
            return -1;
        ADAPTERS(activated, projected, intermediate, hidden, 0, hidden, 6);
        add_rms_norm(x, projected, following, normed, rows, hidden, eps);
    }
#undef ADAPTERS
    return 0;
}

/* The weight exp((x - top) / temperature) of one logit, as the vector loop of sample_row computes it */
static inline float weight_of(float x, float top, float temperature) {
    return _mm256_cvtss_f32(exp256(_mm256_div_ps(_mm256_set1_ps(x - top), _mm256_set1_ps(temperature))));
}

enum { SAMPLE_BLOCK = 64 };

/* One row's token: the first maximum where temperature <= 0; else an inverse-CDF draw from the weights
 * exp((logit - max) / temperature): the first token whose running total exceeds draw (in [0, 1)) times
 * their sum. The running total is never stored: the weights' sums by blocks of 64 tokens are, then the
 * chosen block's tokens are weighed again one by one (a weight is clamped at e^-87.3, never 0). */
static int64_t sample_row(const float *logits, int vocab, float temperature, float draw, float *block_sums) {
    __m256 high = _mm256_set1_ps(-INFINITY);
    int k = 0;
    for (; k + 8 <= vocab; k += 8) high = _mm256_max_ps(high, _mm256_loadu_ps(logits + k));
    float lanes[8], top = -INFINITY;
    _mm256_storeu_ps(lanes, high);
    for (int i = 0; i < 8; i++) top = lanes[i] > top ? lanes[i] : top;
    for (; k < vocab; k++) top = logits[k] > top ? logits[k] : top;
    if (temperature <= 0) {
        for (k = 0; k < vocab - 1 && logits[k] != top; k++) {}
        return k;
    }
    const int blocks = (vocab + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
    const __m256 shift = _mm256_set1_ps(top), divisor = _mm256_set1_ps(temperature);
    double total = 0;
    for (int b = 0; b < blocks; b++) {
        const int start = b * SAMPLE_BLOCK, end = start + SAMPLE_BLOCK < vocab ? start + SAMPLE_BLOCK : vocab;
        __m256 sum = _mm256_setzero_ps();
        for (k = start; k + 8 <= end; k += 8)
            sum = _mm256_add_ps(sum, exp256(_mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(logits + k), shift), divisor)));
        float block = hsum(sum);
        for (; k < end; k++) block += weight_of(logits[k], top, temperature);
        block_sums[b] = block;
        total += block;
    }
    const double target = draw * total;
    double running = 0;
    for (int b = 0; b < blocks; b++) {
        if (running + block_sums[b] <= target && b + 1 < blocks) {
            running += block_sums[b];
            continue;
        }
        const int start = b * SAMPLE_BLOCK, end = start + SAMPLE_BLOCK < vocab ? start + SAMPLE_BLOCK : vocab;
        for (k = start; k < end - 1; k++) {
            running += weight_of(logits[k], top, temperature);
            if (running > target) break;
        }
        return k;  /* the block's last token where the one-by-one sum falls short of the block's */
    }
    return vocab - 1;
}

/* sample_row for rows row_ids[i] of logits (rows, vocab) with temperatures[i] and draws[i], into tokens[i];
 * a row a thread, each on its own: the same token alone or in any batch. Returns 0, or -1 when a thread's
 * block sums could not be allocated. */
int sample_rows(const float *logits, const int64_t *row_ids, const float *temperatures, const float *draws,
                int64_t *tokens, int n, int vocab, int threads) {
    int failed = 0;
    #pragma omp parallel num_threads(n < threads ? (n > 0 ? n : 1) : threads) reduction(|:failed)
    {
        float *block_sums = malloc(((size_t)vocab / SAMPLE_BLOCK + 1) * sizeof(float));
        if (!block_sums) failed = 1;
        #pragma omp for schedule(static)
        for (int i = 0; i < n; i++)
            if (block_sums)
                tokens[i] = sample_row(logits + (size_t)row_ids[i] * vocab, vocab, temperatures[i], draws[i], block_sums);
        free(block_sums);
    }
    return failed ? -1 : 0;
}
