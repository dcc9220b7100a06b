// A small pool of crypto threads that help the calling datapath worker with one large AEAD batch.
#ifndef VEIL_CRYPTO_POOL_H
#define VEIL_CRYPTO_POOL_H
#include <stdbool.h>

#define VEIL_MAX_CRYPTO_THREADS 8

typedef struct crypto_pool crypto_pool;

/** Work on items [begin, end) as thread t (0 = the caller); returns how many succeeded. */
typedef int (*crypto_range_fn)(void *job, int t, int begin, int end);

/** A pool for `threads` threads in all, the caller included (threads - 1 are started). NULL on failure. */
crypto_pool *crypto_pool_create(int threads);
void crypto_pool_destroy(crypto_pool *p);
/** Threads in all, the caller included; 1 for no pool. */
int crypto_pool_threads(const crypto_pool *p);
/**
 * Runs fn over items [0, n) in chunks claimed by whichever thread is free, the caller included,
 * and returns the sum of fn's results once every item is done. A helper that is not scheduled in
 * time simply claims nothing, so the caller never waits for a thread that has not started.
 */
int crypto_pool_run(crypto_pool *p, crypto_range_fn fn, void *job, int n);
#endif
