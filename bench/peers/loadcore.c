/* loadcore.c -- threads, timing and percentiles for the bench/run.py load clients.
 * See loadcore.h for the command line. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loadcore.h"

static const char *g_host;
static int g_port;
static long g_users;
static double g_seconds;
static pthread_barrier_t g_start;
static volatile int g_stop;

struct worker {
	pthread_t tid;
	int index;
	void *conn;
	uint64_t calls, errors;
	uint32_t *lat_ns;          /* every call's latency, ns (capped at 4 s) */
	size_t nlat, cap;
	double elapsed;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = 0x9E3779B97F4A7C15ull * (w->index + 1) ^ (uint64_t)now_ns();
	char name[32];
	pthread_barrier_wait(&g_start);
	double t0 = now(), end = t0 + g_seconds;
	while (!g_stop) {
		long k = (long)(xorshift(&seed) % (uint64_t)g_users);
		snprintf(name, sizeof name, "user%ld", k);
		uint64_t a = now_ns();
		int bad = backend_call(w->conn, name);
		uint64_t d = now_ns() - a;
		w->calls++;
		if (bad)
			w->errors++;
		if (w->nlat == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 65536;
			w->lat_ns = realloc(w->lat_ns, w->cap * sizeof *w->lat_ns);
			if (!w->lat_ns) {
				perror("realloc");
				exit(2);
			}
		}
		w->lat_ns[w->nlat++] = d > 4000000000u ? 4000000000u : (uint32_t)d;
		if ((w->calls & 15) == 0 && now() >= end)
			break;
	}
	w->elapsed = now() - t0;
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (n - 1) + 0.5);
	return v[i] / 1000.0;
}

static int probe(double timeout)
{
	double end = now() + timeout;
	for (;;) {
		void *c = backend_connect(g_host, g_port, 0);
		if (c) {
			int bad = backend_call(c, "user0");
			backend_close(c);
			if (!bad)
				return 0;
		}
		if (now() >= end)
			return 1;
		usleep(5000);
	}
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: %s load|probe HOST PORT USERS SECONDS THREADS [args...]\n",
			argv[0]);
		return 2;
	}
	g_host = argv[2];
	g_port = atoi(argv[3]);
	g_users = atol(argv[4]);
	g_seconds = atof(argv[5]);
	int threads = atoi(argv[6]);
	if (g_users < 1 || threads < 1 || backend_init(argc - 7, argv + 7) != 0)
		return 2;
	if (strcmp(argv[1], "probe") == 0)
		return probe(g_seconds);

	struct worker *ws = calloc(threads, sizeof *ws);
	pthread_barrier_init(&g_start, NULL, threads);
	for (int i = 0; i < threads; i++) {
		ws[i].index = i;
		ws[i].conn = backend_connect(g_host, g_port, 1);
		if (!ws[i].conn) {
			fprintf(stderr, "connection %d to %s:%d failed\n", i, g_host, g_port);
			return 1;
		}
	}
	for (int i = 0; i < threads; i++)
		pthread_create(&ws[i].tid, NULL, run, &ws[i]);
	uint64_t calls = 0, errors = 0;
	size_t nlat = 0;
	double rate = 0, elapsed = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(ws[i].tid, NULL);
		calls += ws[i].calls;
		errors += ws[i].errors;
		nlat += ws[i].nlat;
		rate += ws[i].calls / ws[i].elapsed;     /* summed per-client rates */
		if (ws[i].elapsed > elapsed)
			elapsed = ws[i].elapsed;
		backend_close(ws[i].conn);
	}
	uint32_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
	size_t at = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + at, ws[i].lat_ns, ws[i].nlat * sizeof *all);
		at += ws[i].nlat;
	}
	qsort(all, nlat, sizeof *all, cmp_u32);
	printf("{\"threads\": %d, \"calls\": %llu, \"errors\": %llu, \"seconds\": %.3f, "
	       "\"rate\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
	       "\"max_us\": %.1f}\n", threads, (unsigned long long)calls,
	       (unsigned long long)errors, elapsed, rate, pct(all, nlat, 0.50),
	       pct(all, nlat, 0.99), pct(all, nlat, 0.999), nlat ? all[nlat - 1] / 1000.0 : 0);
	return errors ? 3 : 0;
}
