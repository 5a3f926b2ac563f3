/*
 * upgrade_stress.c — hot upgrades under load fail no call (issue #3).
 *
 * 1. Four threads call checksum through method handles resolved once —
 *    crc32 of "123456789" (known answer 0xCBF43926, into their own buffer)
 *    and version (a zero-copy view of the serving version's static memory)
 *    — while the main thread upgrades checksum 1.0.0 <-> 2.0.0 again and
 *    again. Every call must succeed with a correct result; the test prints
 *    how many version calls each version served. The per-method counters
 *    must account for every call.
 * 2. The same with the lifecycle fixture, whose destroy hook reports
 *    "destroyed" (and "violation" first if a call was still running in that
 *    instance): after N upgrades exactly N distinct instances were destroyed,
 *    none while in use.
 *
 * HOTMOD_STRESS_UPGRADES (default 1000) and HOTMOD_STRESS_LIFECYCLE
 * (default 200) set the number of upgrades (the valgrind run lowers them).
 */
#include <pthread.h>
#include <sched.h>

#include "util.h"

#define THREADS 4

static unsigned env_count(const char *var, unsigned dflt) {
  const char *s = getenv(var);
  if (s == NULL || *s == '\0') return dflt;
  unsigned long v = strtoul(s, NULL, 10);
  return v > 0 && v < 10000000 ? (unsigned)v : dflt;
}

/* ---- checksum v1 <-> v2 --------------------------------------------------- */

typedef struct worker {
  pthread_t thread;
  const hotmod_method *crc, *ver;
  atomic_int *stop;
  uint64_t crc_calls, v1, v2, failures;
  char first_failure[512];
} worker;

static void note_failure(worker *w, const char *what) {
  if (w->failures++ == 0) {
    snprintf(w->first_failure, sizeof w->first_failure, "%s: %s", what, hotmod_last_error_message());
  }
}

static void *checksum_worker(void *arg) {
  worker *w = arg;
  uint8_t dst[4];
  /* Run at least a little even if the upgrades finish first. */
  for (unsigned i = 0; i < 64 || !atomic_load_explicit(w->stop, memory_order_relaxed); i++) {
    size_t n = 0;
    hotmod_status st = hotmod_method_call_into(w->crc, (const uint8_t *)"123456789", 9, dst, sizeof dst, &n);
    w->crc_calls++;
    if (st != HOTMOD_STATUS_OK) {
      note_failure(w, "crc32 failed");
    } else if (n != 4 || get_u32le(dst) != CRC32_123456789) {
      note_failure(w, "crc32 gave a wrong answer");
    }

    hotmod_buffer *b = NULL;
    st = hotmod_method_call(w->ver, NULL, 0, &b);
    if (st != HOTMOD_STATUS_OK) {
      note_failure(w, "version failed");
      continue;
    }
    const uint8_t *data = NULL;
    size_t len = 0;
    if (hotmod_buffer_data(b, &data, &len) != HOTMOD_STATUS_OK || len != 5) {
      note_failure(w, "version gave no 5-byte answer");
    } else if (memcmp(data, "1.0.0", 5) == 0) {
      w->v1++;
    } else if (memcmp(data, "2.0.0", 5) == 0) {
      w->v2++;
    } else {
      note_failure(w, "version gave neither 1.0.0 nor 2.0.0");
    }
    hotmod_buffer_free(b);
    /* Four callers on a small machine: leave the upgrader some CPU. */
    if (i % 256 == 255) sched_yield();
  }
  return NULL;
}

static uint64_t stat_calls(const hotmod_runtime *rt, const char *module, const char *method, uint64_t *errors) {
  hotmod_stats *s = NULL;
  uint64_t calls = UINT64_MAX;
  if (hotmod_runtime_stats(rt, &s) != HOTMOD_STATUS_OK) return calls;
  hotmod_method_stats m;
  if (find_stats(s, module, method, &m)) {
    calls = m.calls;
    *errors = m.errors;
  }
  hotmod_stats_free(s);
  return calls;
}

/* Upgrades `module` `upgrades` times, to paths[i % 2] for upgrade i,
 * yielding every `yield_every` upgrades (0: never); CHECKs that every one
 * succeeded and reports the first that did not. */
static void upgrade_repeatedly(hotmod_runtime *rt, const char *module, const char *const paths[2], unsigned upgrades,
                               unsigned yield_every) {
  unsigned failed = 0;
  char first[512] = "";
  for (unsigned i = 0; i < upgrades; i++) {
    hotmod_status st = hotmod_runtime_upgrade(rt, module, paths[i % 2], NULL, 0, NULL);
    if (st != HOTMOD_STATUS_OK && failed++ == 0) {
      snprintf(first, sizeof first, "upgrade %u: status %d: %s", i, (int)st, hotmod_last_error_message());
    }
    if (yield_every && i % yield_every == 0) sched_yield();
  }
  if (!CHECK(failed == 0)) fprintf(stderr, "    %u upgrades failed; first: %s\n", failed, first);
}

static void checksum_stress(unsigned upgrades) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  const char *v1 = PLUGIN("libchecksum.so"), *v2 = PLUGIN("libchecksum-v2.so");
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, v1, NULL, NULL)));
  hotmod_method *crc = NULL, *ver = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc)));
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "version", &ver)));

  atomic_int stop;
  atomic_init(&stop, 0);
  worker ws[THREADS];
  memset(ws, 0, sizeof ws);
  for (int i = 0; i < THREADS; i++) {
    ws[i].crc = crc;
    ws[i].ver = ver;
    ws[i].stop = &stop;
    REQUIRE(pthread_create(&ws[i].thread, NULL, checksum_worker, &ws[i]) == 0);
  }

  /* Yielding now and then lets the callers see every version. */
  upgrade_repeatedly(rt, "checksum", (const char *const[]){v2, v1}, upgrades, 16);
  atomic_store(&stop, 1);

  uint64_t crc_calls = 0, v1_calls = 0, v2_calls = 0, failures = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(ws[i].thread, NULL);
    crc_calls += ws[i].crc_calls;
    v1_calls += ws[i].v1;
    v2_calls += ws[i].v2;
    failures += ws[i].failures;
    if (ws[i].failures) fprintf(stderr, "    thread %d: %s\n", i, ws[i].first_failure);
    printf("checksum: thread %d: %llu crc32 calls, version served by 1.0.0: %llu, by 2.0.0: %llu\n", i,
           (unsigned long long)ws[i].crc_calls, (unsigned long long)ws[i].v1, (unsigned long long)ws[i].v2);
  }
  printf("checksum: %u upgrades, %llu calls (%llu crc32, %llu version): 1.0.0 served %llu version calls, "
         "2.0.0 served %llu; %llu failed\n",
         upgrades, (unsigned long long)(crc_calls + v1_calls + v2_calls), (unsigned long long)crc_calls,
         (unsigned long long)(v1_calls + v2_calls), (unsigned long long)v1_calls, (unsigned long long)v2_calls,
         (unsigned long long)failures);
  CHECK_U64_EQ(failures, 0);
  CHECK(v1_calls > 0 && v2_calls > 0);

  /* The final version is the one the last upgrade published. */
  hotmod_module *m = NULL;
  CHECK_OK(hotmod_runtime_module(rt, "checksum", &m));
  const char *version = NULL;
  CHECK_OK(hotmod_module_version(m, &version));
  CHECK_STR_EQ(version, upgrades % 2 ? "2.0.0" : "1.0.0");
  hotmod_module_free(m);

  /* The counters saw every call, across all versions. */
  uint64_t errors = UINT64_MAX;
  CHECK_U64_EQ(stat_calls(rt, "checksum", "crc32", &errors), crc_calls);
  CHECK_U64_EQ(errors, 0);
  CHECK_U64_EQ(stat_calls(rt, "checksum", "version", &errors), v1_calls + v2_calls);
  CHECK_U64_EQ(errors, 0);

  /* The plugin's own counter travels through export/import_state. Calls
   * that ran on an old version after it exported its state are not in it,
   * so under load it can only be a lower bound. */
  uint8_t dst[8];
  size_t n = 0;
  CHECK_OK(hotmod_runtime_call_into(rt, "checksum", "calls", NULL, 0, dst, sizeof dst, &n));
  uint64_t carried = n == 8 ? get_u64le(dst) : 0;
  printf("checksum: the plugin's carried-over call counter says %llu of %llu calls\n", (unsigned long long)carried,
         (unsigned long long)(crc_calls + v1_calls + v2_calls + 1));
  CHECK(carried > 0 && carried <= crc_calls + v1_calls + v2_calls + 1);

  hotmod_method_free(crc);
  hotmod_method_free(ver);
  hotmod_runtime_free(rt);
}

/* ---- lifecycle: one destroy per replaced version, never while in use ------ */

#define MAX_IDS 100000
typedef struct destroy_log {
  pthread_mutex_t lock;
  uint64_t *ids;
  size_t n;
  atomic_uint_fast64_t violations;
} destroy_log;

static int32_t on_destroyed(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  destroy_log *d = ud;
  (void)out;
  if (len != 8) return 1;
  pthread_mutex_lock(&d->lock);
  if (d->n < MAX_IDS) d->ids[d->n++] = get_u64le(in);
  pthread_mutex_unlock(&d->lock);
  return 0;
}

static int32_t on_violation(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  (void)in;
  (void)len;
  (void)out;
  atomic_fetch_add(&((destroy_log *)ud)->violations, 1);
  return 0;
}

static size_t destroyed(destroy_log *d) {
  pthread_mutex_lock(&d->lock);
  size_t n = d->n;
  pthread_mutex_unlock(&d->lock);
  return n;
}

typedef struct lc_worker {
  pthread_t thread;
  const hotmod_method *work;
  atomic_int *stop;
  uint64_t calls, failures, switches;
  char first_failure[512];
} lc_worker;

static void *lifecycle_worker(void *arg) {
  lc_worker *w = arg;
  uint64_t last = 0;
  uint8_t dst[8];
  for (unsigned i = 0; i < 64 || !atomic_load_explicit(w->stop, memory_order_relaxed); i++) {
    size_t n = 0;
    hotmod_status st = hotmod_method_call_into(w->work, (const uint8_t *)"payload", 7, dst, sizeof dst, &n);
    w->calls++;
    if (st != HOTMOD_STATUS_OK || n != 8) {
      if (w->failures++ == 0) {
        snprintf(w->first_failure, sizeof w->first_failure, "work: status %d: %s", (int)st,
                 hotmod_last_error_message());
      }
      continue;
    }
    uint64_t id = get_u64le(dst);
    if (id != last) w->switches++;
    last = id;
    if (i % 256 == 255) sched_yield();
  }
  return NULL;
}

static void lifecycle_stress(unsigned upgrades) {
  static destroy_log d;
  pthread_mutex_init(&d.lock, NULL);
  d.ids = calloc(MAX_IDS, sizeof *d.ids);
  REQUIRE(d.ids != NULL);
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  REQUIRE(CHECK_OK(hotmod_runtime_register_host_function(rt, "destroyed", on_destroyed, &d, NULL)));
  REQUIRE(CHECK_OK(hotmod_runtime_register_host_function(rt, "violation", on_violation, &d, NULL)));
  static atomic_uint_fast64_t next_id;
  REQUIRE(CHECK_OK(hotmod_runtime_register_host_function(rt, "new_id", lifecycle_new_id, &next_id, NULL)));
  const char *lc = PLUGIN("liblifecycle.so");
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, lc, NULL, NULL)));
  hotmod_method *work = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "lifecycle", "work", &work)));

  atomic_int stop;
  atomic_init(&stop, 0);
  lc_worker ws[THREADS];
  memset(ws, 0, sizeof ws);
  for (int i = 0; i < THREADS; i++) {
    ws[i].work = work;
    ws[i].stop = &stop;
    REQUIRE(pthread_create(&ws[i].thread, NULL, lifecycle_worker, &ws[i]) == 0);
  }
  upgrade_repeatedly(rt, "lifecycle", (const char *const[]){lc, lc}, upgrades, 0);
  atomic_store(&stop, 1);
  uint64_t calls = 0, failures = 0, switches = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(ws[i].thread, NULL);
    calls += ws[i].calls;
    failures += ws[i].failures;
    switches += ws[i].switches;
    if (ws[i].failures) fprintf(stderr, "    thread %d: %s\n", i, ws[i].first_failure);
  }
  size_t n = destroyed(&d);
  printf("lifecycle: %u upgrades, %llu calls (%llu version switches seen by callers), %zu destroys, %llu "
         "violations, %llu failed calls\n",
         upgrades, (unsigned long long)calls, (unsigned long long)switches, n,
         (unsigned long long)atomic_load(&d.violations), (unsigned long long)failures);
  CHECK_U64_EQ(failures, 0);
  CHECK_U64_EQ(n, upgrades); /* one destroy per replaced version... */
  CHECK_U64_EQ(atomic_load(&d.violations), 0); /* ...each after its last call */
  size_t dups = 0;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < i; j++) dups += d.ids[i] == d.ids[j];
  }
  CHECK_U64_EQ(dups, 0); /* each instance destroyed once */

  uint8_t dst[8];
  size_t len = 0;
  CHECK_OK(hotmod_runtime_call_into(rt, "lifecycle", "generation", NULL, 0, dst, sizeof dst, &len));
  CHECK_U64_EQ(len == 8 ? get_u64le(dst) : 0, upgrades + 1);

  hotmod_method_free(work);
  CHECK_OK(hotmod_runtime_unload(rt, "lifecycle", 0));
  CHECK_U64_EQ(destroyed(&d), upgrades + 1);
  hotmod_runtime_free(rt);
  CHECK_U64_EQ(destroyed(&d), upgrades + 1);
  CHECK_U64_EQ(atomic_load(&d.violations), 0);
  free(d.ids);
}

int main(void) {
  util_init();
  setvbuf(stdout, NULL, _IOLBF, 0);
  checksum_stress(env_count("HOTMOD_STRESS_UPGRADES", 1000));
  lifecycle_stress(env_count("HOTMOD_STRESS_LIFECYCLE", 200));
  return check_summary();
}
