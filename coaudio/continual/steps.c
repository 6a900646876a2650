/*
 * Fused continual steps for float32 on the CPU.
 *
 * coaudio_cosi_step: the whole single-output (CoSi) encoder step.
 *
 * One call does, for each of B streams, exactly what ContinualEncoder.step does for a one-layer
 * encoder in torch: add the recycling position, project q/k/v of the new token, write k and v
 * into copies of the ring buffers, attend over the filled slots, out-projection, residuals,
 * layer norms and feed-forward. The torch implementation is the reference; tests compare both
 * with the regular window forward.
 *
 * Why: a step is ~35 tiny tensor operations, and eager dispatch costs 2-4 us each on the target
 * CPU; fused, the step is bound by reading the weights once.
 *
 * Layouts (row-major, contiguous):
 *   x (B, D); k_t and v_t rings (B, H, Dh, n); t (B,) tokens consumed so far.
 *   weights as in torch.nn.Linear: (out, in).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t d, h, f, n, period;   /* width, heads, FFN width, window, position table size */
    int64_t norm_first, gelu;     /* 1 = pre-LN; 1 = GELU (exact, erf), 0 = ReLU */
    float scale, eps;             /* query scale 1/sqrt(Dh); layer-norm epsilon */
    const float *w_qkv, *b_qkv;   /* (3D, D), (3D) or NULL */
    const float *w_out, *b_out;   /* (D, D), (D) or NULL */
    const float *w_ff1, *b_ff1;   /* (F, D), (F) */
    const float *w_ff2, *b_ff2;   /* (D, F), (D) */
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;  /* (D) each */
    const float *pos;             /* (P, D) recycling table, or NULL */
} cosi_layer;

/* y = W x + b. Four rows at a time: four independent accumulator chains instead of one
 * (a single dot product is bound by the FMA latency, not by bandwidth). */
static void gemv(const float *w, const float *b, const float *x, float *y, int64_t rows, int64_t cols)
{
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = w + r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            const float xc = x[c];
            a0 += w0[c] * xc;
            a1 += w1[c] * xc;
            a2 += w2[c] * xc;
            a3 += w3[c] * xc;
        }
        y[r] = a0;
        y[r + 1] = a1;
        y[r + 2] = a2;
        y[r + 3] = a3;
    }
    for (; r < rows; r++) {
        const float *wr = w + r * cols;
        float acc = 0.0f;
        for (int64_t c = 0; c < cols; c++)
            acc += wr[c] * x[c];
        y[r] = acc;
    }
    if (b)
        for (r = 0; r < rows; r++)
            y[r] += b[r];
}

static void layer_norm(const float *z, const float *w, const float *b, float eps, float *out, int64_t d)
{
    float mean = 0.0f, var = 0.0f;
    for (int64_t i = 0; i < d; i++)
        mean += z[i];
    mean /= (float)d;
    for (int64_t i = 0; i < d; i++)
        var += (z[i] - mean) * (z[i] - mean);
    float inv = 1.0f / sqrtf(var / (float)d + eps);
    for (int64_t i = 0; i < d; i++)
        out[i] = (z[i] - mean) * inv * w[i] + b[i];
}

static void feed_forward(const cosi_layer *L, const float *in, float *hidden, float *out)
{
    gemv(L->w_ff1, L->b_ff1, in, hidden, L->f, L->d);
    for (int64_t i = 0; i < L->f; i++) {
        float u = hidden[i];
        hidden[i] = L->gelu ? u * (0.5f + 0.5f * erff(u * 0.70710678118654752f)) : (u > 0.0f ? u : 0.0f);
    }
    gemv(L->w_ff2, L->b_ff2, hidden, out, L->d, L->f);
}

/* Softmax attention of one query over the first `count` slots of one head's ring. */
static void attend(const float *q, const float *k_t, const float *v_t, int64_t dh, int64_t n,
                   int64_t count, float scale, float *logits, float *out)
{
    for (int64_t j = 0; j < count; j++)
        logits[j] = 0.0f;
    for (int64_t e = 0; e < dh; e++) {
        float qe = q[e] * scale;
        const float *row = k_t + e * n;
        for (int64_t j = 0; j < count; j++)
            logits[j] += qe * row[j];
    }
    float top = logits[0];
    for (int64_t j = 1; j < count; j++)
        top = logits[j] > top ? logits[j] : top;
    float total = 0.0f;
    for (int64_t j = 0; j < count; j++) {
        logits[j] = expf(logits[j] - top);
        total += logits[j];
    }
    float inv = 1.0f / total;
    /* Values are stored transposed like the keys, (Dh, n): Dh contiguous dot products of
     * length n vectorize far better than n updates of a Dh-long row. */
    for (int64_t e = 0; e < dh; e++) {
        const float *row = v_t + e * n;
        float acc = 0.0f;
        for (int64_t j = 0; j < count; j++)
            acc += logits[j] * row[j];
        out[e] = acc * inv;
    }
}

/* Returns 0, or -1 if scratch memory could not be allocated (outputs untouched then). */
int coaudio_cosi_step(const cosi_layer *L, int64_t batch, const int64_t *t, const float *x,
                      const float *k_t, const float *v_t, float *y, float *k_t_new, float *v_t_new,
                      int64_t *t_new)
{
    const int64_t d = L->d, h = L->h, dh = d / h, n = L->n, f = L->f;
    float *scratch = malloc(sizeof(float) * (size_t)(9 * d + f + n));
    if (!scratch)
        return -1;
    float *xp = scratch, *normed = xp + d, *qkv = normed + d, *att = qkv + 3 * d;
    float *mix = att + d, *h1 = mix + d, *ff = h1 + d, *hidden = ff + d, *logits = hidden + f;
    const int64_t ring = h * dh * n;

    for (int64_t b = 0; b < batch; b++) {
        const int64_t tb = t[b], slot = tb % n, count = tb + 1 < n ? tb + 1 : n;
        const float *xb = x + b * d;
        for (int64_t i = 0; i < d; i++)
            xp[i] = L->pos ? xb[i] + L->pos[(tb % L->period) * d + i] : xb[i];
        if (L->norm_first)
            layer_norm(xp, L->ln1_w, L->ln1_b, L->eps, normed, d);
        gemv(L->w_qkv, L->b_qkv, L->norm_first ? normed : xp, qkv, 3 * d, d);

        /* Copy one head's slice of the rings, write the new token, and attend while the
         * slice is still in L1 (copying whole rings first would evict it). */
        const int64_t head = dh * n;
        for (int64_t hh = 0; hh < h; hh++) {
            float *kh = k_t_new + b * ring + hh * head, *vh = v_t_new + b * ring + hh * head;
            memcpy(kh, k_t + b * ring + hh * head, sizeof(float) * (size_t)head);
            memcpy(vh, v_t + b * ring + hh * head, sizeof(float) * (size_t)head);
            for (int64_t e = 0; e < dh; e++) {
                kh[e * n + slot] = qkv[d + hh * dh + e];
                vh[e * n + slot] = qkv[2 * d + hh * dh + e];
            }
            attend(qkv + hh * dh, kh, vh, dh, n, count, L->scale, logits, att + hh * dh);
        }

        gemv(L->w_out, L->b_out, att, mix, d, d);
        float *yb = y + b * d;
        if (L->norm_first) {
            for (int64_t i = 0; i < d; i++)
                h1[i] = xp[i] + mix[i];
            layer_norm(h1, L->ln2_w, L->ln2_b, L->eps, normed, d);
            feed_forward(L, normed, hidden, ff);
            for (int64_t i = 0; i < d; i++)
                yb[i] = h1[i] + ff[i];
        } else {
            for (int64_t i = 0; i < d; i++)
                mix[i] += xp[i];
            layer_norm(mix, L->ln1_w, L->ln1_b, L->eps, h1, d);
            feed_forward(L, h1, hidden, ff);
            for (int64_t i = 0; i < d; i++)
                ff[i] += h1[i];
            layer_norm(ff, L->ln2_w, L->ln2_b, L->eps, yb, d);
        }
        t_new[b] = tb + 1;
    }
    free(scratch);
    return 0;
}

/*
 * Retroactive (CoRe) attention update for float32 on the CPU: the bookkeeping part of
 * retroactive.py's retroactive_step (same math, same stability rules), for all B streams and
 * H heads. Projections, the x ring and the row-wise out-projection/FFN stay in torch (they
 * are matrix products, which torch does well).
 *
 * Layouts (row-major, contiguous): new q/k/v (B, H, Dh), q pre-scaled; rings q, k, v and num
 * (B, H, n, Dh); m, den, mass (B, H, n); attended output (B, n, H * Dh).
 * Slots that a warming-up stream has not filled yet are copied unchanged (their rows are
 * masked downstream; they only need to stay finite).
 */
typedef struct {
    int64_t h, dh, n;
    float recompute_below;   /* recompute a row once den < recompute_below * mass */
} core_dims;

static float dot(const float *a, const float *b, int64_t len)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < len; i++)
        acc += a[i] * b[i];
    return acc;
}

/* Exact softmax statistics of row `i` over the first `count` keys; `scratch` has n floats. */
static void exact_row(const float *q, const float *k, const float *v, int64_t i, int64_t dh,
                      int64_t count, float *scratch, float *m, float *den, float *num, float *mass)
{
    const float *qi = q + i * dh;
    float top = 0.0f;  /* no -INFINITY start: -ffast-math assumes finite values */
    for (int64_t j = 0; j < count; j++) {
        scratch[j] = dot(qi, k + j * dh, dh);
        top = (j == 0 || scratch[j] > top) ? scratch[j] : top;
    }
    float total = 0.0f;
    float *ni = num + i * dh;
    for (int64_t e = 0; e < dh; e++)
        ni[e] = 0.0f;
    for (int64_t j = 0; j < count; j++) {
        float w = expf(scratch[j] - top);
        total += w;
        const float *vj = v + j * dh;
        for (int64_t e = 0; e < dh; e++)
            ni[e] += w * vj[e];
    }
    m[i] = top;
    den[i] = total;
    mass[i] = total;
}

int coaudio_core_step(const core_dims *L, int64_t batch, const int64_t *t, const float *q_new,
                      const float *k_new, const float *v_new, const float *q, const float *k,
                      const float *v, const float *m, const float *den, const float *num,
                      const float *mass, float *q_out, float *k_out, float *v_out, float *m_out,
                      float *den_out, float *num_out, float *mass_out, float *attended)
{
    const int64_t h = L->h, dh = L->dh, n = L->n, ring = n * dh;
    float *scratch = malloc(sizeof(float) * (size_t)n);
    if (!scratch)
        return -1;
    for (int64_t b = 0; b < batch; b++) {
        const int64_t tb = t[b], slot = tb % n, count = tb + 1 < n ? tb + 1 : n;
        const int evict = tb >= n;
        for (int64_t hh = 0; hh < h; hh++) {
            const int64_t bh = b * h + hh;
            const float *qn = q_new + bh * dh, *kn = k_new + bh * dh, *vn = v_new + bh * dh;
            const float *k_old = k + bh * ring + slot * dh, *v_old = v + bh * ring + slot * dh;
            float *qo = q_out + bh * ring, *ko = k_out + bh * ring, *vo = v_out + bh * ring;
            float *mo = m_out + bh * n, *dno = den_out + bh * n, *mso = mass_out + bh * n;
            float *nmo = num_out + bh * ring;
            memcpy(qo, q + bh * ring, sizeof(float) * (size_t)ring);
            memcpy(ko, k + bh * ring, sizeof(float) * (size_t)ring);
            memcpy(vo, v + bh * ring, sizeof(float) * (size_t)ring);
            memcpy(nmo, num + bh * ring, sizeof(float) * (size_t)ring);
            memcpy(mo, m + bh * n, sizeof(float) * (size_t)n);
            memcpy(dno, den + bh * n, sizeof(float) * (size_t)n);
            memcpy(mso, mass + bh * n, sizeof(float) * (size_t)n);

            /* one new column for every other filled row, one leaving column once full */
            for (int64_t i = 0; i < count; i++) {
                if (i == slot)
                    continue;
                const float *qi = qo + i * dh;
                const float l_new = dot(qi, kn, dh);
                const float top = mo[i] > l_new ? mo[i] : l_new;
                const float rescale = expf(mo[i] - top), e_new = expf(l_new - top);
                const float e_old = evict ? expf(dot(qi, k_old, dh) - top) : 0.0f;
                float *ni = nmo + i * dh;
                for (int64_t e = 0; e < dh; e++)
                    ni[e] = ni[e] * rescale + e_new * vn[e] - e_old * v_old[e];
                mo[i] = top;
                dno[i] = dno[i] * rescale + e_new - e_old;
                mso[i] = mso[i] * rescale + e_new + e_old;
            }
            for (int64_t e = 0; e < dh; e++) {  /* the new token enters its slot */
                qo[slot * dh + e] = qn[e];
                ko[slot * dh + e] = kn[e];
                vo[slot * dh + e] = vn[e];
            }
            exact_row(qo, ko, vo, slot, dh, count, scratch, mo, dno, nmo, mso);
            for (int64_t i = 0; i < count; i++)  /* a dominant key left: recompute exactly */
                if (dno[i] < L->recompute_below * mso[i])
                    exact_row(qo, ko, vo, i, dh, count, scratch, mo, dno, nmo, mso);

            for (int64_t i = 0; i < n; i++) {
                const float inv = 1.0f / dno[i];
                float *out = attended + (b * n + i) * h * dh + hh * dh;
                for (int64_t e = 0; e < dh; e++)
                    out[e] = nmo[i * dh + e] * inv;
            }
        }
    }
    free(scratch);
    return 0;
}
