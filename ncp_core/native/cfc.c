/* The wired CfC over a whole sequence, forward and backward, on the CPU.
 *
 * Layer l (H_l neurons, I_l inputs: the S sensory features for l = 0, the
 * H_{l-1} neurons of layer l-1 otherwise) is a backbone-less CfC:
 *   z = [in, h_l] W_l^T + b_l,   W_l = [W_1 ∘ m; W_2 ∘ m; W_a; W_b]  (4H, I+H)
 *   f_1 = tanh(z_1),  f_2 = tanh(z_2),  g = σ(z_a t / τ + z_b)
 *   h_l' = f_1 (1 − g) + g f_2   (gated)   or   f_1 + g f_2   (no gate)
 * where m = mask ∘ gains, t the elapsed time of the step and τ the neuron's
 * time scale; "in" is the new state of layer l-1 at the same step. Where
 * keep[b, t] is 0 every layer keeps its state.
 *
 * Inside, the state of a sample is one row in *layer order*: layer l holds
 * positions [o_l, o_l + H_l) with o_l = H_0 + … + H_{l-1}; perm maps a
 * position to its neuron id. A working row [x_t | state] then holds the
 * operand [in, h_l] of layer l as one contiguous run that starts at layer
 * l-1 (or at x_t), because layer l-1 is updated in place before layer l.
 *
 * Layouts (float32, C order): x (B, L, S); h0, h_final (B, N) by neuron id;
 * elapsed and keep (B, L); y (B, L, M) or (B, M); saved states hs (B, L, N)
 * in layer order; saved activations act (B, L, C·N), for layer l the C runs
 * f_1, f_2, g (and z_a when the elapsed time is differentiated) of H_l
 * values at C·o_l. Parameters per layer, as the MLX module holds them:
 * ff1, ff2, time_a, time_b weights (H, I+H), their biases (H), the mask and
 * the gains (H, I+H).
 *
 * Products are register-blocked: MR rows × NR columns of the result stay in
 * vector registers. The threads take chunks of the batch in turn; a
 * sample's numbers do not depend on its chunk. The weight gradients are
 * summed after the backward recurrence, each thread over its own rows of
 * them and in a fixed order, so no result depends on the number of threads.
 */
#if defined(__GNUC__) && !defined(__clang__)
/* -std=c11 turns contraction off in GCC; a fused a·b + c is one rounding
   closer to the exact value, not a reordering */
#pragma GCC optimize("fp-contract=fast")
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastmath.h"

#define MR 4
#define NR 16
#define PARAMS_PER_LAYER 10

typedef float vec8 __attribute__((vector_size(32)));

static inline vec8 vload(const float *p) {
  vec8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void vstore(float *p, vec8 v) { memcpy(p, &v, sizeof v); }

static inline int round_up(int n) { return (n + NR - 1) / NR * NR; }

/* C[i, j] (+)= Σ_p A[i·ai + p·ap] B[p·ldb + j] for i < m, j < n, with n a
   multiple of NR. ai, ap give A or its transpose without a copy. */
static void product(int m, int n, int k, const float *a, long ai, long ap,
                    const float *b, long ldb, float *c, long ldc,
                    int accumulate) {
  int i = 0;
  for (; i + MR <= m; i += MR) {
    const float *ar = a + (long)i * ai;
    for (int j = 0; j < n; j += NR) {
      float *cr = c + (long)i * ldc + j;
      vec8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0};
      vec8 c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
      if (accumulate) {
        c00 = vload(cr), c01 = vload(cr + 8);
        c10 = vload(cr + ldc), c11 = vload(cr + ldc + 8);
        c20 = vload(cr + 2 * ldc), c21 = vload(cr + 2 * ldc + 8);
        c30 = vload(cr + 3 * ldc), c31 = vload(cr + 3 * ldc + 8);
      }
      const float *bp = b + j;
      for (int p = 0; p < k; p++, bp += ldb) {
        const float *col = ar + (long)p * ap;
        vec8 b0 = vload(bp), b1 = vload(bp + 8);
        float a0 = col[0], a1 = col[ai], a2 = col[2 * ai], a3 = col[3 * ai];
        c00 += a0 * b0, c01 += a0 * b1;
        c10 += a1 * b0, c11 += a1 * b1;
        c20 += a2 * b0, c21 += a2 * b1;
        c30 += a3 * b0, c31 += a3 * b1;
      }
      vstore(cr, c00), vstore(cr + 8, c01);
      vstore(cr + ldc, c10), vstore(cr + ldc + 8, c11);
      vstore(cr + 2 * ldc, c20), vstore(cr + 2 * ldc + 8, c21);
      vstore(cr + 3 * ldc, c30), vstore(cr + 3 * ldc + 8, c31);
    }
  }
  for (; i < m; i++) {
    const float *ar = a + (long)i * ai;
    for (int j = 0; j < n; j += NR) {
      float *cr = c + (long)i * ldc + j;
      vec8 c0 = {0}, c1 = {0};
      if (accumulate) c0 = vload(cr), c1 = vload(cr + 8);
      const float *bp = b + j;
      for (int p = 0; p < k; p++, bp += ldb) {
        float a0 = ar[(long)p * ap];
        c0 += a0 * vload(bp), c1 += a0 * vload(bp + 8);
      }
      vstore(cr, c0), vstore(cr + 8, c1);
    }
  }
}

/* Sizes and operands of one call, shared read-only by the threads. */
typedef struct {
  int batch, length, sensory, units, motor, layers;
  int gated, sequences, elapsed_steps, has_keep, channels, threads;
  float elapsed;
  const int64_t *size;  /* H_l */
  int *offset;          /* o_l */
  int *inputs;          /* I_l */
  int *width;           /* round_up(4 H_l): a row of z */
  int *span;            /* round_up(I_l + H_l): a row of d[in, h] */
  int max_width, max_span;
  const int32_t *perm;  /* layer-order position → neuron id */
  int32_t *position;    /* neuron id → layer-order position */
  const float *x, *h0, *steps, *scales;
  const uint8_t *keep;
  const float *const *param; /* PARAMS_PER_LAYER per layer */
  float **wt;   /* (I+H, width): W_l^T, zero-padded columns */
  float **wo;   /* (4H, span): W_l, zero-padded columns (backward only) */
  float **bias; /* (width) */
} net_t;

enum { W1, W2, WA, WB, B1, B2, BA, BB, MASK, GAIN };

/* dims: B, L, S, N, M, layers, gated, sequences, elapsed_steps, has_keep,
   threads, then H_l; inputs: x, h0, elapsed (B, L) or NULL, keep or NULL,
   time scales (N, layer order), then the parameters of each layer */
static int net_open(net_t *net, const int64_t *dims, const int32_t *perm,
                    float elapsed, const void *const *inputs, int backward) {
  memset(net, 0, sizeof *net);
  net->batch = (int)dims[0], net->length = (int)dims[1];
  net->sensory = (int)dims[2], net->units = (int)dims[3];
  net->motor = (int)dims[4], net->layers = (int)dims[5];
  net->gated = (int)dims[6], net->sequences = (int)dims[7];
  net->elapsed_steps = (int)dims[8], net->has_keep = (int)dims[9];
  net->threads = (int)dims[10];
  net->size = dims + 11;
  net->channels = net->elapsed_steps ? 4 : 3;
  net->elapsed = elapsed;
  net->perm = perm;
  net->x = inputs[0], net->h0 = inputs[1], net->steps = inputs[2];
  net->keep = inputs[3], net->scales = inputs[4];
  net->param = (const float *const *)(inputs + 5);

  int n = net->layers;
  net->offset = malloc(sizeof(int) * n * 4);
  net->position = malloc(sizeof(int32_t) * net->units);
  net->wt = calloc(n * 3, sizeof(float *));
  if (!net->offset || !net->position || !net->wt) return -1;
  net->inputs = net->offset + n, net->width = net->offset + 2 * n;
  net->span = net->offset + 3 * n;
  net->wo = net->wt + n, net->bias = net->wt + 2 * n;
  for (int p = 0; p < net->units; p++) net->position[perm[p]] = p;

  int offset = 0;
  for (int l = 0; l < n; l++) {
    int h = (int)net->size[l];
    int in = l == 0 ? net->sensory : (int)net->size[l - 1];
    int k = in + h, width = round_up(4 * h), span = round_up(k);
    net->offset[l] = offset, net->inputs[l] = in;
    net->width[l] = width, net->span[l] = span;
    if (width > net->max_width) net->max_width = width;
    if (span > net->max_span) net->max_span = span;
    offset += h;

    const float *const *w = net->param + l * PARAMS_PER_LAYER;
    float *wt = calloc((size_t)k * width, sizeof(float));
    float *bias = calloc((size_t)width, sizeof(float));
    float *wo = backward ? calloc((size_t)4 * h * span, sizeof(float)) : NULL;
    net->wt[l] = wt, net->bias[l] = bias, net->wo[l] = wo;
    if (!wt || !bias || (backward && !wo)) return -1;
    for (int i = 0; i < h; i++) {
      for (int q = 0; q < k; q++) {
        long at = (long)i * k + q;
        float scale = w[MASK][at] * w[GAIN][at];
        float gate[4] = {w[W1][at] * scale, w[W2][at] * scale, w[WA][at],
                         w[WB][at]};
        for (int g = 0; g < 4; g++) {
          wt[(long)q * width + g * h + i] = gate[g];
          if (wo) wo[(long)(g * h + i) * span + q] = gate[g];
        }
      }
      bias[i] = w[B1][i], bias[h + i] = w[B2][i];
      bias[2 * h + i] = w[BA][i], bias[3 * h + i] = w[BB][i];
    }
  }
  return 0;
}

static void net_close(net_t *net) {
  if (net->wt) {
    for (int l = 0; l < 3 * net->layers; l++) free(net->wt[l]);
  }
  free(net->wt);
  free(net->offset);
  free(net->position);
}

static inline int kept(const net_t *net, int b, int t) {
  return !net->has_keep || net->keep[(long)b * net->length + t];
}

static inline float elapsed_at(const net_t *net, int b, int t) {
  return net->elapsed_steps ? net->steps[(long)b * net->length + t]
                            : net->elapsed;
}

/* Samples per chunk of the batch: about four chunks per thread, so that a
   thread the system holds back delays only its last chunk, in whole MR
   blocks. */
static int chunk_size(int batch, int threads) {
  if (threads < 1) threads = 1;
  int per = (batch + 4 * threads - 1) / (4 * threads);
  if (per < 1) per = 1;
  return (per + MR - 1) / MR * MR;
}

/* Threads for `work` independent pieces: at most one each, at least one. */
static int team(int threads, int work) {
  int count = threads < work ? threads : work;
  return count > 1 ? count : 1;
}

/* One layer's heads for the rows of z; new states go into row r of `row`
   (stride `stride`) where the step is kept. */
static void heads_forward(const net_t *net, int l, int lo, int hi, int t,
                          const float *z, float *row, long stride,
                          float *act) {
  int h = (int)net->size[l], width = net->width[l], gated = net->gated;
  int channels = net->channels, n = net->units;
  const float *tau = net->scales + net->offset[l];
  for (int r = 0; r < hi - lo; r++) {
    int b = lo + r;
    const float *zr = z + (long)r * width;
    float *hr = row + (long)r * stride;
    float *ar = act + ((long)b * net->length + t) * channels * n +
                (long)channels * net->offset[l];
    float e = elapsed_at(net, b, t);
    int keep = kept(net, b, t);
#pragma omp simd
    for (int i = 0; i < h; i++) {
      float f1 = ncp_tanh(zr[i]), f2 = ncp_tanh(zr[h + i]);
      float g = ncp_sigmoid(zr[2 * h + i] * (e / tau[i]) + zr[3 * h + i]);
      float next = gated ? f1 * (1.0f - g) + g * f2 : f1 + g * f2;
      ar[i] = f1, ar[h + i] = f2, ar[2 * h + i] = g;
      hr[i] = keep ? next : hr[i];
    }
    if (channels == 4) memcpy(ar + 3 * h, zr + 2 * h, sizeof(float) * h);
  }
}

static int forward_run(const net_t *net, int lo, int hi, float *y,
                       float *h_final, float *hs, float *act) {
  int rows = hi - lo;
  if (rows <= 0) return 0;
  int S = net->sensory, N = net->units, M = net->motor, L = net->length;
  long stride = S + N;
  float *work = malloc(sizeof(float) * rows * stride);
  float *z = malloc(sizeof(float) * rows * net->max_width);
  if (!work || !z) {
    free(work), free(z);
    return -1;
  }
  for (int r = 0; r < rows; r++) {
    for (int p = 0; p < N; p++)
      work[r * stride + S + p] = net->h0[(long)(lo + r) * N + net->perm[p]];
  }

  for (int t = 0; t < L; t++) {
    for (int r = 0; r < rows; r++)
      memcpy(work + r * stride, net->x + ((long)(lo + r) * L + t) * S,
             sizeof(float) * S);
    for (int l = 0; l < net->layers; l++) {
      int width = net->width[l], k = net->inputs[l] + (int)net->size[l];
      const float *operand = work + (l == 0 ? 0 : S + net->offset[l - 1]);
      for (int r = 0; r < rows; r++)
        memcpy(z + (long)r * width, net->bias[l], sizeof(float) * width);
      product(rows, width, k, operand, stride, 1, net->wt[l], width, z, width,
              1);
      heads_forward(net, l, lo, hi, t, z, work + S + net->offset[l], stride,
                    act);
    }
    for (int r = 0; r < rows; r++) {
      const float *state = work + r * stride + S;
      long step = (long)(lo + r) * L + t;
      memcpy(hs + step * N, state, sizeof(float) * N);
      if (net->sequences) {
        for (int m = 0; m < M; m++) y[step * M + m] = state[net->position[m]];
      }
    }
  }

  for (int r = 0; r < rows; r++) {
    const float *state = work + r * stride + S;
    long b = lo + r;
    for (int id = 0; id < N; id++) h_final[b * N + id] = state[net->position[id]];
    if (!net->sequences) {
      for (int m = 0; m < M; m++) y[b * M + m] = state[net->position[m]];
    }
  }
  free(work), free(z);
  return 0;
}

/* dims, perm, elapsed, inputs as net_open; outputs: y, h_final, hs, act */
int ncp_cfc_forward(const int64_t *dims, const int32_t *perm, float elapsed,
                    const void *const *inputs, void *const *outputs) {
  net_t net;
  int status = net_open(&net, dims, perm, elapsed, inputs, 0);
  if (status == 0) {
    int chunk = chunk_size(net.batch, net.threads);
    int chunks = (net.batch + chunk - 1) / chunk;
    int threads = team(net.threads, chunks);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (int c = 0; c < chunks; c++) {
      int lo = c * chunk, hi = lo + chunk < net.batch ? lo + chunk : net.batch;
      if (forward_run(&net, lo, hi, outputs[0], outputs[1], outputs[2],
                      outputs[3]) != 0) {
#pragma omp atomic write
        status = -1;
      }
    }
  }
  net_close(&net);
  return status;
}

/* ∂z of one layer's heads for the rows of dh (stride `stride`) into dz
   (rows `dz_stride` apart, zero where a step is padding); the elapsed time's
   gradient is added to d_steps. */
static void heads_backward(const net_t *net, int l, int lo, int hi, int t,
                           const float *dh, long stride, const float *act,
                           float *dz, long dz_stride, float *d_steps) {
  int h = (int)net->size[l], width = net->width[l], gated = net->gated;
  int channels = net->channels, n = net->units;
  const float *tau = net->scales + net->offset[l];
  for (int r = 0; r < hi - lo; r++) {
    int b = lo + r;
    float *dzr = dz + (long)r * dz_stride;
    if (!kept(net, b, t)) {
      memset(dzr, 0, sizeof(float) * width);
      continue;
    }
    const float *dhr = dh + (long)r * stride;
    const float *ar = act + ((long)b * net->length + t) * channels * n +
                      (long)channels * net->offset[l];
    float e = elapsed_at(net, b, t);
#pragma omp simd
    for (int i = 0; i < h; i++) {
      float f1 = ar[i], f2 = ar[h + i], g = ar[2 * h + i], d = dhr[i];
      float d_f1 = gated ? d * (1.0f - g) : d;
      float d_g = gated ? d * (f2 - f1) : d * f2;
      float d_pre = d_g * (g * (1.0f - g));
      dzr[i] = d_f1 * (1.0f - f1 * f1);
      dzr[h + i] = (d * g) * (1.0f - f2 * f2);
      dzr[2 * h + i] = d_pre * (e / tau[i]);
      dzr[3 * h + i] = d_pre;
    }
    memset(dzr + 4 * h, 0, sizeof(float) * (width - 4 * h));
    if (channels == 4) {
      float de = 0.0f;
#pragma omp simd reduction(+ : de)
      for (int i = 0; i < h; i++) de += dzr[3 * h + i] * ar[3 * h + i] / tau[i];
      d_steps[(long)b * net->length + t] += de;
    }
  }
}

/* The cotangents backwards through the steps of the samples [lo, hi): ∂z of
   every layer and step into dz[l] (B, L, width_l), and ∂x, ∂h0, ∂elapsed.
   Also the start states in layer order into start (B, N). */
static int backward_run(const net_t *net, int lo, int hi, const float *act,
                        const float *dy, const float *dh_final, float *dx,
                        float *dh0, float *d_steps, float *const *dz,
                        float *start) {
  int rows = hi - lo;
  if (rows <= 0) return 0;
  int S = net->sensory, N = net->units, M = net->motor, L = net->length;
  float *dh = malloc(sizeof(float) * rows * N);
  float *dcat = malloc(sizeof(float) * rows * net->max_span);
  if (!dh || !dcat) {
    free(dh), free(dcat);
    return -1;
  }
  for (int r = 0; r < rows; r++) {
    long b = lo + r;
    for (int p = 0; p < N; p++) {
      dh[r * N + p] = dh_final[b * N + net->perm[p]];
      start[b * N + p] = net->h0[b * N + net->perm[p]];
    }
    if (!net->sequences) {
      for (int m = 0; m < M; m++) dh[r * N + net->position[m]] += dy[b * M + m];
    }
    if (d_steps) memset(d_steps + b * L, 0, sizeof(float) * L);
  }

  for (int t = L - 1; t >= 0; t--) {
    if (net->sequences) {
      for (int r = 0; r < rows; r++) {
        const float *dyr = dy + ((long)(lo + r) * L + t) * M;
        for (int m = 0; m < M; m++) dh[r * N + net->position[m]] += dyr[m];
      }
    }
    for (int l = net->layers - 1; l >= 0; l--) {
      int h = (int)net->size[l], in = net->inputs[l], o = net->offset[l];
      int width = net->width[l], span = net->span[l];
      float *dzl = dz[l] + ((long)lo * L + t) * width;
      long dz_stride = (long)L * width;
      heads_backward(net, l, lo, hi, t, dh + o, N, act, dzl, dz_stride,
                     d_steps);
      product(rows, span, 4 * h, dzl, dz_stride, 1, net->wo[l], span, dcat,
              span, 0);
      for (int r = 0; r < rows; r++) {
        long step = (long)(lo + r) * L + t;
        const float *d = dcat + (long)r * span;
        int keep = kept(net, lo + r, t);
        if (l == 0) {
          if (keep)
            memcpy(dx + step * S, d, sizeof(float) * S);
          else
            memset(dx + step * S, 0, sizeof(float) * S);
        }
        if (!keep) continue;
        float *dr = dh + (long)r * N;
        if (l > 0) {
          float *prev = dr + net->offset[l - 1];
          for (int q = 0; q < in; q++) prev[q] += d[q];
        }
        memcpy(dr + o, d + in, sizeof(float) * h);
      }
    }
  }

  for (int r = 0; r < rows; r++) {
    for (int p = 0; p < N; p++)
      dh0[(long)(lo + r) * N + net->perm[p]] = dh[r * N + p];
  }
  free(dh), free(dcat);
  return 0;
}

/* Part `part` of `parts` of layer l's ∂W^T (I+H, width) and ∂b (width):
   Σ over samples and steps of [in, h_l before the step]^T ∂z. Each part has
   its own rows of ∂W^T, so every sum runs in one fixed order whatever the
   threads. */
static void weight_grads(const net_t *net, int l, int part, int parts,
                         const float *hs, const float *start, const float *dz,
                         float *gw) {
  int S = net->sensory, N = net->units, L = net->length;
  int h = (int)net->size[l], in = net->inputs[l], width = net->width[l];
  int in_lo = (int)((long)in * part / parts);
  int in_hi = (int)((long)in * (part + 1) / parts);
  int h_lo = (int)((long)h * part / parts);
  int h_hi = (int)((long)h * (part + 1) / parts);
  float *g_in = gw + (long)in_lo * width, *g_h = gw + (long)(in + h_lo) * width;
  memset(g_in, 0, sizeof(float) * (in_hi - in_lo) * width);
  memset(g_h, 0, sizeof(float) * (h_hi - h_lo) * width);
  const float *own = hs + net->offset[l] + h_lo;

  for (int b = 0; b < net->batch; b++) {
    const float *dzb = dz + (long)b * L * width;
    const float *rows;
    long row_stride;
    if (l == 0)
      rows = net->x + (long)b * L * S, row_stride = S;
    else
      rows = hs + (long)b * L * N + net->offset[l - 1], row_stride = N;
    product(in_hi - in_lo, width, L, rows + in_lo, 1, row_stride, dzb, width,
            g_in, width, 1);
    /* the state before step 0 is the start state, before step t > 0 the
       state after step t - 1 */
    product(h_hi - h_lo, width, 1, start + (long)b * N + net->offset[l] + h_lo,
            1, 0, dzb, width, g_h, width, 1);
    product(h_hi - h_lo, width, L - 1, own + (long)b * L * N, 1, N,
            dzb + width, width, g_h, width, 1);
  }

  if (part == 0) {
    float *gb = gw + (long)(in + h) * width;
    memset(gb, 0, sizeof(float) * width);
    for (long r = 0; r < (long)net->batch * L; r++) {
      const float *dzr = dz + r * width;
#pragma omp simd
      for (int q = 0; q < width; q++) gb[q] += dzr[q];
    }
  }
}

/* The parameter gradients of layer l from ∂W^T and ∂b. */
static void layer_grads(const net_t *net, int l, const float *gw,
                        float *const *out) {
  int h = (int)net->size[l], k = net->inputs[l] + h, width = net->width[l];
  const float *const *w = net->param + l * PARAMS_PER_LAYER;
  const float *gb = gw + (long)k * width;
  for (int i = 0; i < h; i++) {
    for (int q = 0; q < k; q++) {
      long at = (long)i * k + q;
      const float *row = gw + (long)q * width;
      float d1 = row[i], d2 = row[h + i];
      float mask = w[MASK][at], gain = w[GAIN][at], scale = mask * gain;
      float d_scale = d1 * w[W1][at] + d2 * w[W2][at];
      out[W1][at] = d1 * scale, out[W2][at] = d2 * scale;
      out[WA][at] = row[2 * h + i], out[WB][at] = row[3 * h + i];
      out[MASK][at] = d_scale * gain, out[GAIN][at] = d_scale * mask;
    }
    out[B1][i] = gb[i], out[B2][i] = gb[h + i];
    out[BA][i] = gb[2 * h + i], out[BB][i] = gb[3 * h + i];
  }
}

/* dims, perm, elapsed, inputs as ncp_cfc_forward, then in `saved`: hs, act,
   ∂y, ∂h_final; outputs: ∂x, ∂h0, ∂elapsed (or NULL), then per layer the
   gradients of its parameters in their order. The results do not depend on
   the number of threads. */
int ncp_cfc_backward(const int64_t *dims, const int32_t *perm, float elapsed,
                     const void *const *inputs, const void *const *saved,
                     void *const *outputs) {
  net_t net;
  float *buffer = NULL, **dz = NULL;
  int status = net_open(&net, dims, perm, elapsed, inputs, 1);
  long B = net.batch, L = net.length, per_step = 0, weights = 0;
  if (status == 0) {
    for (int l = 0; l < net.layers; l++) {
      per_step += net.width[l];
      weights += (long)(net.inputs[l] + net.size[l] + 1) * net.width[l];
    }
    buffer = malloc(sizeof(float) * (B * L * per_step + B * net.units + weights));
    dz = malloc(sizeof(float *) * net.layers * 2);
    if (!buffer || !dz) status = -1;
  }
  if (status == 0) {
    float *at = buffer, *start, **gw = dz + net.layers;
    for (int l = 0; l < net.layers; l++) {
      dz[l] = at;
      at += B * L * net.width[l];
    }
    start = at, at += B * net.units;
    for (int l = 0; l < net.layers; l++) {
      gw[l] = at;
      at += (long)(net.inputs[l] + net.size[l] + 1) * net.width[l];
    }
    const float *hs = saved[0];

    int chunk = chunk_size(net.batch, net.threads);
    int chunks = (net.batch + chunk - 1) / chunk;
    int threads = team(net.threads, chunks);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (int c = 0; c < chunks; c++) {
      int lo = c * chunk, hi = lo + chunk < net.batch ? lo + chunk : net.batch;
      if (backward_run(&net, lo, hi, saved[1], saved[2], saved[3], outputs[0],
                       outputs[1], outputs[2], dz, start) != 0) {
#pragma omp atomic write
        status = -1;
      }
    }

    int parts = net.threads > 1 ? net.threads : 1;
    int tasks = net.layers * parts;
    threads = team(net.threads, tasks);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (int task = 0; task < tasks; task++) {
      int l = task / parts;
      weight_grads(&net, l, task % parts, parts, hs, start, dz[l], gw[l]);
    }
    if (status == 0) {
      for (int l = 0; l < net.layers; l++)
        layer_grads(&net, l, gw[l],
                    (float *const *)(outputs + 3 + l * PARAMS_PER_LAYER));
    }
  }
  free(buffer);
  free(dz);
  net_close(&net);
  return status;
}
