/* The LTC cell over a whole sequence, forward and backward, on the CPU.
 *
 * Per step t the sensory synapses give the constant drive
 *   sn_j = g_l,j v_l,j + Σ_q a_qj E_qj,   sd_j = g_l,j + Σ_q a_qj,
 *   a_qj = w_qj σ(s_qj (x_q − μ_qj)),
 * and the ODE is unfolded K times from the previous state:
 *   v_j ← (c_j v_j + sn_j + Σ_i a_ij E_ij) / (c_j + sd_j + Σ_i a_ij + ε),
 *   a_ij = w_ij σ(s_ij (v_i − μ_ij)),   c_j = cm_j / Δt.
 * Where keep[t, b] is 0 the state is carried over unchanged.
 *
 * The inputs are mapped first, x_q ← x_q win_q + bin_q.
 *
 * Layouts (float32, C order): inputs x (B, L, S), start state u0 (B, N),
 * states (B, L, N), Δt and keep (B, L) (or one Δt for all: dt_full = 0);
 * saved for the backward: unfold states V (L, K+1, N, B) with V[t, 0] the
 * start state of step t and V[t, K] the solver's result, and denominators
 * D (L, K, N, B).
 * Synapses are given sorted by target: ptr (N+1) offsets into src (E) and
 * the per-synapse parameters w, s, mu, erev (E), for the recurrent (i → j)
 * and the sensory (q → j) synapses alike.
 *
 * The batch is the innermost axis: every synapse is evaluated for a run of
 * samples at once, which the compiler vectorises. Threads take contiguous
 * runs of the batch; each keeps its own parameter-gradient sums.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastmath.h"

typedef struct {
  const int32_t *ptr;
  const int32_t *src;
  const float *w, *s, *mu, *erev;
} synapses_t;

typedef struct {
  float *w, *s, *mu, *erev;
} synapse_grads_t;

/* the batch run [*lo, *hi) of thread `id` of `count`, in multiples of 8 */
static void batch_run(int batch, int id, int count, int *lo, int *hi) {
  int blocks = (batch + 7) / 8;
  int per = blocks / count, extra = blocks % count;
  int first = id * per + (id < extra ? id : extra);
  int size = per + (id < extra ? 1 : 0);
  *lo = first * 8 < batch ? first * 8 : batch;
  *hi = (first + size) * 8 < batch ? (first + size) * 8 : batch;
}

/* the threads a call of batch B uses: at most one per block of 8 samples */
static int thread_count(int B, int threads) {
  int blocks = (B + 7) / 8;
  if (threads > blocks) threads = blocks;
  return threads < 1 ? 1 : threads;
}

/* the batch run [*lo, *hi) of the calling thread of a parallel region */
static void my_run(int B, int threads, int *lo, int *hi) {
  int id = 0;
#ifdef _OPENMP
  id = omp_get_thread_num();
#endif
  batch_run(B, id, threads, lo, hi);
}

/* frees what `count` pointers hold; 0 if none of them was NULL, else -1 */
static int release_on_failure(void **blocks, int count) {
  int failed = 0;
  for (int i = 0; i < count; i++) failed |= blocks[i] == NULL;
  if (failed)
    for (int i = 0; i < count; i++) free(blocks[i]);
  return failed ? -1 : 0;
}

/* num[b] += Σ a E, den[b] += Σ a over the synapses into target j, for
   a = w σ(s (u_src − μ)) with u the (P, B) source plane; b in [lo, hi) */
static inline void synapse_sums(const synapses_t *syn, int j, const float *u,
                                int B, int lo, int hi, float *num, float *den) {
  for (int e = syn->ptr[j]; e < syn->ptr[j + 1]; e++) {
    const float *ui = u + (size_t)syn->src[e] * B;
    float w = syn->w[e], s = syn->s[e], mu = syn->mu[e], rev = syn->erev[e];
#pragma omp simd
    for (int b = lo; b < hi; b++) {
      float a = w * ncp_sigmoid(s * (ui[b] - mu));
      num[b] += a * rev;
      den[b] += a;
    }
  }
}

/* Back through synapse_sums for target j: from g_num, g_den (the gradients
   of num and den, rows of b) into the synapse parameters' sums and into the
   source plane's gradient g_u */
static inline void synapse_grads(const synapses_t *syn, int j, const float *u,
                                 int B, int lo, int hi, const float *g_num,
                                 const float *g_den, synapse_grads_t *grads,
                                 float *g_u) {
  for (int e = syn->ptr[j]; e < syn->ptr[j + 1]; e++) {
    size_t row = (size_t)syn->src[e] * B;
    const float *ui = u + row;
    float *gi = g_u + row;
    float w = syn->w[e], s = syn->s[e], mu = syn->mu[e], rev = syn->erev[e];
    float sum_e = 0.0f, sum_w = 0.0f, sum_s = 0.0f, sum_mu = 0.0f;
#pragma omp simd reduction(+ : sum_e, sum_w, sum_s, sum_mu)
    for (int b = lo; b < hi; b++) {
      float d = ui[b] - mu;
      float sg = ncp_sigmoid(s * d);
      float da = g_num[b] * rev + g_den[b];
      sum_e += g_num[b] * sg;
      sum_w += da * sg;
      float dz = da * w * sg * (1.0f - sg);
      sum_s += dz * d;
      sum_mu += dz;
      gi[b] += dz * s;
    }
    grads->erev[e] += w * sum_e;
    grads->w[e] += sum_w;
    grads->s[e] += sum_s;
    grads->mu[e] -= s * sum_mu;
  }
}

/* the mapped inputs of step t as (S, B) columns [lo, hi) of xt */
static void step_inputs(int B, int L, int S, int t, int lo, int hi,
                        const float *x, const float *win, const float *bin,
                        float *xt) {
  for (int b = lo; b < hi; b++) {
    const float *row = x + ((size_t)b * L + t) * S;
    for (int q = 0; q < S; q++) xt[(size_t)q * B + b] = row[q] * win[q] + bin[q];
  }
}

/* sn, sd (N, B) over [lo, hi) for the inputs xt (S, B) of one step */
static void sensory_drive(int N, int B, int lo, int hi, const float *xt,
                          const synapses_t *sen, const float *gleak,
                          const float *vleak, float *sn, float *sd) {
  for (int j = 0; j < N; j++) {
    float *num = sn + (size_t)j * B, *den = sd + (size_t)j * B;
    float leak = gleak[j] * vleak[j], g = gleak[j];
    for (int b = lo; b < hi; b++) {
      num[b] = leak;
      den[b] = g;
    }
    synapse_sums(sen, j, xt, B, lo, hi, num, den);
  }
}

int ncp_ltc_forward(int B, int L, int N, int S, int K, int threads,
                     const float *x, const float *win, const float *bin,
                     const float *u0, const float *cm, const float *dt,
                     int dt_full, const float *gleak, const float *vleak,
                     const uint8_t *keep, const int32_t *ptr,
                     const int32_t *src, const float *w, const float *s,
                     const float *mu, const float *erev, const int32_t *sptr,
                     const int32_t *ssrc, const float *sw, const float *ss,
                     const float *smu, const float *serev, float epsilon,
                     float *states, float *V, float *D) {
  synapses_t rec = {ptr, src, w, s, mu, erev};
  synapses_t sen = {sptr, ssrc, sw, ss, smu, serev};
  size_t plane = (size_t)N * B;
  float *sn = malloc(sizeof(float) * plane), *sd = malloc(sizeof(float) * plane);
  float *xt = malloc(sizeof(float) * ((size_t)S * B + 1));
  float *inv_dt = malloc(sizeof(float) * (size_t)B);
  void *blocks[] = {sn, sd, xt, inv_dt};
  if (release_on_failure(blocks, 4)) return -1;
  threads = thread_count(B, threads);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    int lo, hi;
    my_run(B, threads, &lo, &hi);
    for (int t = 0; t < L && hi > lo; t++) {
      float *Vt = V + (size_t)t * (K + 1) * plane;
      if (t == 0) {
        for (int j = 0; j < N; j++)
          for (int b = lo; b < hi; b++) Vt[(size_t)j * B + b] = u0[(size_t)b * N + j];
      } else {
        /* the previous step's state: its result where it was kept */
        const float *prev = Vt - (size_t)(K + 1) * plane;
        const float *solved = prev + (size_t)K * plane;
        for (int j = 0; j < N; j++)
          for (int b = lo; b < hi; b++) {
            size_t i = (size_t)j * B + b;
            int kept = keep == NULL || keep[(size_t)b * L + t - 1];
            Vt[i] = kept ? solved[i] : prev[i];
          }
      }
      for (int b = lo; b < hi; b++)
        inv_dt[b] = 1.0f / (dt_full ? dt[(size_t)b * L + t] : dt[0]);
      step_inputs(B, L, S, t, lo, hi, x, win, bin, xt);
      sensory_drive(N, B, lo, hi, xt, &sen, gleak, vleak, sn, sd);
      for (int k = 0; k < K; k++) {
        const float *v = Vt + (size_t)k * plane;
        float *out = Vt + (size_t)(k + 1) * plane;
        float *den_out = D + ((size_t)t * K + k) * plane;
        for (int j = 0; j < N; j++) {
          float *num = out + (size_t)j * B, *den = den_out + (size_t)j * B;
          const float *vj = v + (size_t)j * B, *snj = sn + (size_t)j * B,
                      *sdj = sd + (size_t)j * B;
          float c = cm[j];
#pragma omp simd
          for (int b = lo; b < hi; b++) {
            float ct = c * inv_dt[b];
            num[b] = ct * vj[b] + snj[b];
            den[b] = ct + sdj[b] + epsilon;
          }
          synapse_sums(&rec, j, v, B, lo, hi, num, den);
#pragma omp simd
          for (int b = lo; b < hi; b++) num[b] = num[b] / den[b];
        }
      }
      const float *start = Vt, *solved = Vt + (size_t)K * plane;
      for (int b = lo; b < hi; b++) {
        float *st = states + ((size_t)b * L + t) * N;
        int kept = keep == NULL || keep[(size_t)b * L + t];
        const float *from = kept ? solved : start;
        for (int j = 0; j < N; j++) st[j] = from[(size_t)j * B + b];
      }
    }
  }
  free(sn);
  free(sd);
  free(xt);
  free(inv_dt);
  return 0;
}

int ncp_ltc_backward(int B, int L, int N, int S, int K, int threads,
                      const float *x, const float *win, const float *bin,
                      const float *cm, const float *dt, int dt_full,
                      const float *gleak, const float *vleak,
                      const uint8_t *keep, const int32_t *ptr,
                      const int32_t *src, const float *w, const float *s,
                      const float *mu, const float *erev, const int32_t *sptr,
                      const int32_t *ssrc, const float *sw, const float *ss,
                      const float *smu, const float *serev, const float *V,
                      const float *D, const float *g_states, float *g_x,
                      float *g_win, float *g_bin, float *g_u0, float *g_cm,
                      float *g_gleak, float *g_vleak, float *g_dt,
                      float *g_w, float *g_s,
                      float *g_mu, float *g_erev, float *g_sw, float *g_ss,
                      float *g_smu, float *g_serev) {
  synapses_t rec = {ptr, src, w, s, mu, erev};
  synapses_t sen = {sptr, ssrc, sw, ss, smu, serev};
  int E = ptr[N], Es = sptr[N];
  size_t plane = (size_t)N * B;
  threads = thread_count(B, threads);
  /* per thread: 4E + 4Es + 3N + 2S parameter-gradient sums */
  size_t per_thread =
      4 * (size_t)E + 4 * (size_t)Es + 3 * (size_t)N + 2 * (size_t)S;
  float *sums = calloc(per_thread * threads + 1, sizeof(float));
  /* shared (N, B) work planes; threads touch disjoint batch runs */
  float *g_a = malloc(sizeof(float) * plane), *g_b = malloc(sizeof(float) * plane);
  float *g_num = malloc(sizeof(float) * plane), *g_den = malloc(sizeof(float) * plane);
  float *gN = malloc(sizeof(float) * plane), *gD = malloc(sizeof(float) * plane);
  float *carry = malloc(sizeof(float) * plane);
  /* the mapped inputs of a step and their gradient, (S, B) */
  float *xt = malloc(sizeof(float) * ((size_t)S * B + 1));
  float *gxt = malloc(sizeof(float) * ((size_t)S * B + 1));
  float *inv_dt = malloc(sizeof(float) * (size_t)B);
  /* per sample: Σ over neurons and unfolds of ∂loss/∂c_t · cm, for Δt */
  float *dt_sum = malloc(sizeof(float) * (size_t)B);
  void *blocks[] = {sums, g_a,   g_b, g_num,  g_den, gN,
                    gD,   carry, xt,  gxt,    inv_dt, dt_sum};
  if (release_on_failure(blocks, 12)) return -1;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    int lo, hi, id = 0;
#ifdef _OPENMP
    id = omp_get_thread_num();
#endif
    batch_run(B, id, threads, &lo, &hi);
    float *mine = sums + per_thread * id;
    synapse_grads_t gr = {mine, mine + E, mine + 2 * E, mine + 3 * E};
    float *sbase = mine + 4 * (size_t)E;
    synapse_grads_t gsn = {sbase, sbase + Es, sbase + 2 * Es, sbase + 3 * Es};
    float *gcm = sbase + 4 * (size_t)Es, *ggl = gcm + N, *gvl = ggl + N;
    float *gwin = gvl + N, *gbin = gwin + S;
    /* the state gradient and the next one; each thread swaps its own
       pointers, over its own columns of the shared planes */
    float *g = g_a, *g_next = g_b;
    for (int j = 0; j < N; j++)
      for (int b = lo; b < hi; b++) carry[(size_t)j * B + b] = 0.0f;
    for (int t = L - 1; t >= 0 && hi > lo; t--) {
      const float *Vt = V + (size_t)t * (K + 1) * plane;
      for (int b = lo; b < hi; b++) {
        inv_dt[b] = 1.0f / (dt_full ? dt[(size_t)b * L + t] : dt[0]);
        dt_sum[b] = 0.0f;
      }
      /* the gradient at the step's output splits into the solver's share
         and, where the step was skipped, the carried state's */
      for (int b = lo; b < hi; b++) {
        const float *gst = g_states + ((size_t)b * L + t) * N;
        int kept = keep == NULL || keep[(size_t)b * L + t];
        for (int j = 0; j < N; j++) {
          size_t i = (size_t)j * B + b;
          float total = gst[j] + carry[i];
          g[i] = kept ? total : 0.0f;
          carry[i] = kept ? 0.0f : total;
          g_num[i] = 0.0f;
          g_den[i] = 0.0f;
        }
      }
      for (int k = K - 1; k >= 0; k--) {
        const float *v = Vt + (size_t)k * plane, *out = Vt + (size_t)(k + 1) * plane;
        const float *den = D + ((size_t)t * K + k) * plane;
        for (int j = 0; j < N; j++) {
          size_t row = (size_t)j * B;
          float c = cm[j], gc = 0.0f;
#pragma omp simd reduction(+ : gc)
          for (int b = lo; b < hi; b++) {
            float r = 1.0f / den[row + b];
            float n_grad = g[row + b] * r;
            float d_grad = -n_grad * out[row + b];
            gN[row + b] = n_grad;
            gD[row + b] = d_grad;
            float g_ct = n_grad * v[row + b] + d_grad;
            gc += g_ct * inv_dt[b];
            dt_sum[b] += g_ct * c;
            g_num[row + b] += n_grad;
            g_den[row + b] += d_grad;
            g_next[row + b] = n_grad * c * inv_dt[b];
          }
          gcm[j] += gc;
        }
        for (int j = 0; j < N; j++) {
          size_t row = (size_t)j * B;
          synapse_grads(&rec, j, v, B, lo, hi, gN + row, gD + row, &gr, g_next);
        }
        float *swap = g;
        g = g_next;
        g_next = swap;
      }
      /* c_t = cm / Δt: ∂c_t/∂Δt = −cm / Δt² */
      if (g_dt != NULL)
        for (int b = lo; b < hi; b++)
          g_dt[(size_t)b * L + t] = -dt_sum[b] * inv_dt[b] * inv_dt[b];
      /* the sensory drive and the leak */
      step_inputs(B, L, S, t, lo, hi, x, win, bin, xt);
      for (int q = 0; q < S; q++)
        for (int b = lo; b < hi; b++) gxt[(size_t)q * B + b] = 0.0f;
      for (int j = 0; j < N; j++) {
        size_t row = (size_t)j * B;
        float sum_num = 0.0f, sum_den = 0.0f;
#pragma omp simd reduction(+ : sum_num, sum_den)
        for (int b = lo; b < hi; b++) {
          sum_num += g_num[row + b];
          sum_den += g_den[row + b];
        }
        ggl[j] += sum_num * vleak[j] + sum_den;
        gvl[j] += sum_num * gleak[j];
        synapse_grads(&sen, j, xt, B, lo, hi, g_num + row, g_den + row, &gsn,
                      gxt);
      }
      /* back through the input mapping */
      for (int b = lo; b < hi; b++) {
        const float *row = x + ((size_t)b * L + t) * S;
        float *grow = g_x + ((size_t)b * L + t) * S;
        for (int q = 0; q < S; q++) {
          float gq = gxt[(size_t)q * B + b];
          grow[q] = gq * win[q];
          gwin[q] += gq * row[q];
          gbin[q] += gq;
        }
      }
      /* what reaches the previous step's state */
      for (int j = 0; j < N; j++)
        for (int b = lo; b < hi; b++) carry[(size_t)j * B + b] += g[(size_t)j * B + b];
    }
    for (int b = lo; b < hi; b++)
      for (int j = 0; j < N; j++) g_u0[(size_t)b * N + j] = carry[(size_t)j * B + b];
  }
  /* sum the threads' parameter gradients */
  float *outs[13] = {g_w,  g_s,  g_mu,    g_erev,  g_sw,  g_ss, g_smu,
                     g_serev, g_cm, g_gleak, g_vleak, g_win, g_bin};
  size_t sizes[13] = {E, E, E, E, Es, Es, Es, Es, N, N, N, S, S};
  size_t offset = 0;
  for (int o = 0; o < 13; o++) {
    for (size_t i = 0; i < sizes[o]; i++) {
      float total = 0.0f;
      for (int th = 0; th < threads; th++) total += sums[per_thread * th + offset + i];
      outs[o][i] = total;
    }
    offset += sizes[o];
  }
  free(sums);
  free(g_a);
  free(g_b);
  free(g_num);
  free(g_den);
  free(gN);
  free(gD);
  free(carry);
  free(xt);
  free(gxt);
  free(inv_dt);
  free(dt_sum);
  return 0;
}

/* The floor: seconds per synapse evaluation of the fused
 *   a = w σ(s (v − μ)),  num += a E,  den += a
 * over `synapses` synapses of contiguous (batch,) rows, `rounds` times over
 * the same rows (so they stay in cache, as a step's potentials do in the
 * kernel), without the index look-ups of the kernel; the batch is split
 * across threads as in the kernel. The fastest of `repeats` passes. For
 * benchmarks. */
static double seconds_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

double ncp_ltc_floor(int synapses, int batch, int repeats, int threads,
                     int rounds) {
  size_t size = (size_t)synapses * batch;
  float *v = malloc(sizeof(float) * size);
  float *params = malloc(sizeof(float) * 4 * (size_t)synapses);
  float *num = calloc((size_t)batch, sizeof(float));
  float *den = calloc((size_t)batch, sizeof(float));
  uint32_t state = 12345u;
  for (size_t i = 0; i < size; i++) {
    state = state * 1664525u + 1013904223u;
    v[i] = (float)(state >> 8) / 16777216.0f - 0.5f;
  }
  for (int e = 0; e < synapses; e++) {
    params[4 * e] = 0.5f;
    params[4 * e + 1] = 3.0f + (float)(e % 5);
    params[4 * e + 2] = 0.3f + 0.1f * (float)(e % 5);
    params[4 * e + 3] = (e % 3) ? 1.0f : -1.0f;
  }
  void *blocks[] = {v, params, num, den};
  if (release_on_failure(blocks, 4)) return -1.0;
  threads = thread_count(batch, threads);
  double best = 1e30;
  for (int r = 0; r < repeats; r++) {
    double start = seconds_now();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
      int lo, hi;
      my_run(batch, threads, &lo, &hi);
      for (int round = 0; round < rounds; round++)
        for (int e = 0; e < synapses; e++) {
          const float *ve = v + (size_t)e * batch;
          const float *pe = params + 4 * (size_t)e;
          float we = pe[0], se = pe[1], me = pe[2], re = pe[3];
#pragma omp simd
          for (int b = lo; b < hi; b++) {
            float a = we * ncp_sigmoid(se * (ve[b] - me));
            num[b] += a * re;
            den[b] += a;
          }
        }
    }
    double elapsed = seconds_now() - start;
    if (elapsed < best) best = elapsed;
  }
  /* keep the sums alive */
  volatile float sink = num[0] + den[batch - 1];
  (void)sink;
  free(v);
  free(params);
  free(num);
  free(den);
  return best / ((double)size * rounds);
}

/* σ elementwise, as the kernels evaluate it (for tests of its accuracy) */
void ncp_ltc_sigmoid(const float *x, float *y, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++) y[i] = ncp_sigmoid(x[i]);
}
