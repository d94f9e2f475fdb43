// What one touch of a line another core wrote since costs, in the pattern a pooler has:
// two threads, each pinned to its own CPU, each doing ~1 µs of private work between
// touches, so nearly every touch finds the line in the other core's cache. Reports the
// extra wall time per touch against the same loop on per-thread lines.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#define ITER 2000000L
#define WORK 400
static struct { _Alignas(128) atomic_long v; } lines[2];
static pthread_mutex_t mtx[2] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
static atomic_int go;
static int mode, nthreads;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static void pin(int c) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(c, &s); pthread_setaffinity_np(pthread_self(), sizeof s, &s); }

static void *run(void *arg) {
    long id = (long)arg; pin((int)id);
    volatile long local = 0;
    atomic_fetch_add(&go, 1); while (atomic_load(&go) < nthreads) {}
    for (long i = 0; i < ITER; i++) {
        for (int w = 0; w < WORK; w++) local++;
        switch (mode) {
        case 0: break;
        case 1: atomic_fetch_add_explicit(&lines[id].v, 1, memory_order_relaxed); break;
        case 2: atomic_fetch_add_explicit(&lines[0].v, 1, memory_order_relaxed); break;
        case 3: pthread_mutex_lock(&mtx[id]); lines[id].v++; pthread_mutex_unlock(&mtx[id]); break;
        case 4: pthread_mutex_lock(&mtx[0]); lines[0].v++; pthread_mutex_unlock(&mtx[0]); break;
        }
    }
    return 0;
}

static double once(int m) {
    mode = m; go = 0; nthreads = 2;
    pthread_t t[2]; double t0 = now();
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    return (now() - t0) * 1e9 / ITER;  // ns per iteration of one thread (both run in parallel)
}

int main(void) {
    const char *names[] = {"private work only", "+ fetch_add on a per-thread line",
                           "+ fetch_add on one shared line", "+ lock/add/unlock, per-thread mutex",
                           "+ lock/add/unlock, one shared mutex"};
    for (int rep = 0; rep < 3; rep++) {
        double base = 0;
        for (int m = 0; m < 5; m++) {
            double ns = once(m);
            if (m == 0) base = ns;
            printf("rep %d  %-38s %7.1f ns/iteration  (%+6.1f ns over private work only)\n", rep + 1, names[m], ns, ns - base);
        }
    }
    return 0;
}
