// Cost of a shared atomic counter and a shared mutex on this machine: two threads, each
// pinned to its own CPU, N operations each; per-operation wall time, shared line vs
// per-thread lines; and the one-way cache-line transfer time (CAS ping-pong).
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N 20000000L
static struct { _Alignas(128) atomic_long v; } lines[2];
static pthread_mutex_t mtx[2] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
static _Alignas(128) atomic_long pp;
static atomic_int go;
static int mode; // 0 shared add, 1 private add, 2 shared mutex, 3 private mutex, 4 ping-pong

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static void pin(int c) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(c, &s); pthread_setaffinity_np(pthread_self(), sizeof s, &s); }

static void *run(void *arg) {
    long id = (long)arg; pin((int)id);
    atomic_fetch_add(&go, 1); while (atomic_load(&go) < 2) {}
    long n = mode >= 2 && mode <= 3 ? N / 4 : N;
    for (long i = 0; i < n; i++) {
        switch (mode) {
        case 0: atomic_fetch_add_explicit(&lines[0].v, 1, memory_order_relaxed); break;
        case 1: atomic_fetch_add_explicit(&lines[id].v, 1, memory_order_relaxed); break;
        case 2: pthread_mutex_lock(&mtx[0]); lines[0].v++; pthread_mutex_unlock(&mtx[0]); break;
        case 3: pthread_mutex_lock(&mtx[id]); lines[id].v++; pthread_mutex_unlock(&mtx[id]); break;
        case 4: if (i >= N / 8) return 0;
                while ((atomic_load_explicit(&pp, memory_order_acquire) & 1) != id) {}
                atomic_fetch_add_explicit(&pp, 1, memory_order_release); break;
        }
    }
    return 0;
}

int main(void) {
    const char *names[] = {"fetch_add, one shared line", "fetch_add, one line per thread",
                           "mutex lock+add+unlock, one shared mutex", "mutex lock+add+unlock, one mutex per thread",
                           "CAS ping-pong (one-way line transfer)"};
    for (mode = 0; mode < 5; mode++) {
        go = 0; pp = 0; lines[0].v = lines[1].v = 0;
        pthread_t t[2]; double t0 = now();
        for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
        for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
        double dt = now() - t0;
        long ops = mode == 4 ? N / 8 * 2 : (mode >= 2 ? N / 4 : N) * 2;
        printf("%-46s %7.1f ns per operation (wall, 2 threads, %ld ops)\n", names[mode], dt * 1e9 / ops, ops);
    }
    // One thread alone, for the uncontended cost.
    mode = 1; go = 1; { double t0 = now(); pthread_t t; pthread_create(&t, 0, run, (void *)0); pthread_join(t, 0);
      printf("%-46s %7.1f ns per operation (1 thread)\n", "fetch_add, uncontended", (now() - t0) * 1e9 / N); }
    mode = 3; go = 1; { double t0 = now(); pthread_t t; pthread_create(&t, 0, run, (void *)0); pthread_join(t, 0);
      printf("%-46s %7.1f ns per operation (1 thread)\n", "mutex lock+add+unlock, uncontended", (now() - t0) * 1e9 / (N / 4)); }
    return 0;
}
