// The crypto pool: helpers sleep on a condition variable; a batch is published with a new
// generation, and every thread claims chunks of items from one atomic (generation << 32 | next
// index), so a helper that wakes late for an old generation can never claim a newer batch's items.
#include "crypto-pool.h"
#include <pthread.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <stdint.h>
#include <stdlib.h>

#define CHUNK 4 // items per claim: small enough to balance, large enough to amortise the atomic

typedef struct { struct crypto_pool *pool; int t; } helper_arg;

struct crypto_pool {
  pthread_mutex_t mu;
  pthread_cond_t go;
  pthread_cond_t finished;  // a helper completed the batch's last item
  uint32_t gen;             // guarded by mu
  bool stop;                // guarded by mu
  crypto_range_fn fn;       // the current batch, guarded by mu
  void *job;
  int n;
  uint64_t claim;           // atomic: gen << 32 | next item
  int done;                 // atomic: items finished in the current generation
  int good;                 // atomic: sum of fn's results in the current generation
  int threads, started;
  pthread_t th[VEIL_MAX_CRYPTO_THREADS];
  helper_arg args[VEIL_MAX_CRYPTO_THREADS];
};

// Claims and runs chunks of generation gen until none are left.
static void work(crypto_pool *p, uint32_t gen, crypto_range_fn fn, void *job, int n, int t) {
  for (;;) {
    uint64_t v = __atomic_load_n(&p->claim, __ATOMIC_ACQUIRE);
    int begin;
    do {
      if ((uint32_t)(v >> 32) != gen) return;
      begin = (int)(uint32_t)v;
      if (begin >= n) return;
    } while (!__atomic_compare_exchange_n(&p->claim, &v, v + CHUNK, true, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    int end = begin + CHUNK < n ? begin + CHUNK : n;
    int ok = fn(job, t, begin, end);
    __atomic_add_fetch(&p->good, ok, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&p->done, end - begin, __ATOMIC_RELEASE) == n && t != 0) {
      pthread_mutex_lock(&p->mu); // the caller checks `done` under mu before it sleeps
      pthread_cond_signal(&p->finished);
      pthread_mutex_unlock(&p->mu);
    }
  }
}

static void *helper_main(void *a) {
  helper_arg *h = a;
  crypto_pool *p = h->pool;
  uint32_t seen = 0;
  char name[16];
  snprintf(name, sizeof name, "veil-crypto-%d", h->t); // named apart from the datapath worker that started it
  prctl(PR_SET_NAME, name, 0, 0, 0);
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->gen == seen && !p->stop) pthread_cond_wait(&p->go, &p->mu);
    if (p->stop) break;
    seen = p->gen;
    crypto_range_fn fn = p->fn; void *job = p->job; int n = p->n;
    pthread_mutex_unlock(&p->mu);
    work(p, seen, fn, job, n, h->t);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

crypto_pool *crypto_pool_create(int threads) {
  if (threads < 2 || threads > VEIL_MAX_CRYPTO_THREADS) return NULL;
  crypto_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->go, NULL);
  pthread_cond_init(&p->finished, NULL);
  p->threads = threads;
  for (int t = 1; t < threads; t++) {
    p->args[t] = (helper_arg){ p, t };
    if (pthread_create(&p->th[t], NULL, helper_main, &p->args[t]) != 0) { crypto_pool_destroy(p); return NULL; }
    p->started = t;
  }
  return p;
}

void crypto_pool_destroy(crypto_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  for (int t = 1; t <= p->started; t++) pthread_join(p->th[t], NULL);
  pthread_cond_destroy(&p->go);
  pthread_cond_destroy(&p->finished);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int crypto_pool_threads(const crypto_pool *p) {
  return p ? p->threads : 1;
}

int crypto_pool_run(crypto_pool *p, crypto_range_fn fn, void *job, int n) {
  if (!p || n <= CHUNK) return fn(job, 0, 0, n);
  pthread_mutex_lock(&p->mu);
  uint32_t gen = ++p->gen;
  if (gen == 0) gen = ++p->gen; // 0 is every helper's initial "seen"
  p->fn = fn; p->job = job; p->n = n;
  __atomic_store_n(&p->done, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&p->good, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&p->claim, (uint64_t)gen << 32, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  work(p, gen, fn, job, n, 0);
  // Only chunks a helper has already claimed remain, and they are being worked on: wait a few
  // microseconds awake, then sleep, so that a helper preempted mid-chunk does not cost CPU here.
  for (int spins = 0; spins < 64 && __atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n; spins++) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  if (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n) {
    pthread_mutex_lock(&p->mu);
    while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n) pthread_cond_wait(&p->finished, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
  return __atomic_load_n(&p->good, __ATOMIC_RELAXED);
}
