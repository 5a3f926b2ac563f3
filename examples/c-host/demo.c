/*
 * hotmod demo host (C): loads the example plugins, calls them, upgrades the
 * checksum module from 1.0.0 to 2.0.0 while four threads keep calling it,
 * and prints what each version served and the runtime's metrics.
 *
 * Usage: demo PLUGIN_DIR
 */
#define _POSIX_C_SOURCE 200809L
#include <hotmod.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CALLERS 4

static void die(const char *what, hotmod_status st) {
  fprintf(stderr, "demo: %s failed: %s (%d): %s\n", what, hotmod_status_str(st), (int)st,
          hotmod_last_error_message());
  exit(1);
}

#define CHECK(what, call)          \
  do {                             \
    hotmod_status st_ = (call);    \
    if (st_ != HOTMOD_STATUS_OK) { \
      die(what, st_);              \
    }                              \
  } while (0)

static const char *kind_name(int32_t kind) {
  switch (kind) {
    case HOTMOD_EVENT_KIND_LOADED: return "loaded";
    case HOTMOD_EVENT_KIND_VALIDATED: return "validated";
    case HOTMOD_EVENT_KIND_ACTIVATED: return "activated";
    case HOTMOD_EVENT_KIND_DRAINING: return "draining";
    case HOTMOD_EVENT_KIND_UNLOADED: return "unloaded";
    case HOTMOD_EVENT_KIND_UPGRADE_FAILED: return "upgrade failed";
    case HOTMOD_EVENT_KIND_KEPT_MAPPED: return "kept mapped";
    case HOTMOD_EVENT_KIND_LOG: return "log";
    default: return "event";
  }
}

static void on_event(void *user_data, const hotmod_event *ev) {
  (void)user_data;
  printf("  [event] %-10s %s %s: %s\n", kind_name(ev->kind), ev->module, ev->version, ev->message);
}

/* A host function plugins can call: text.greet asks for a salutation. */
static int32_t greeting(void *user_data, const uint8_t *input, size_t len, hotmod_output *out) {
  (void)user_data;
  (void)input;
  (void)len;
  return hotmod_output_write(out, "Welcome", 7);
}

static void print_call(const hotmod_runtime *rt, const char *module, const char *method, const void *input,
                       size_t len, int as_text) {
  hotmod_buffer *buf = NULL;
  CHECK(method, hotmod_runtime_call(rt, module, method, input, len, &buf));
  const uint8_t *data = NULL;
  size_t n = 0;
  CHECK("hotmod_buffer_data", hotmod_buffer_data(buf, &data, &n));
  printf("  %s.%s -> ", module, method);
  if (as_text) {
    printf("\"%.*s\"\n", (int)n, (const char *)data);
  } else {
    printf("0x");
    for (size_t i = n; i > 0; i--) printf("%02x", data[i - 1]);
    printf(" (%zu bytes, little-endian)\n", n);
  }
  hotmod_buffer_free(buf);
}

typedef struct {
  hotmod_method *version;
  hotmod_method *crc32;
  atomic_int *stop;
  unsigned long served_v1, served_v2, failed;
} caller;

static void *call_loop(void *arg) {
  caller *c = arg;
  uint8_t out[16];
  size_t n = 0;
  const uint8_t expected[4] = {0x26, 0x39, 0xf4, 0xcb}; /* CRC-32 of "123456789" */
  while (!atomic_load(c->stop)) {
    if (hotmod_method_call_into(c->crc32, (const uint8_t *)"123456789", 9, out, sizeof out, &n) != HOTMOD_STATUS_OK ||
        n != 4 || memcmp(out, expected, 4) != 0) {
      c->failed++;
      continue;
    }
    if (hotmod_method_call_into(c->version, NULL, 0, out, sizeof out, &n) != HOTMOD_STATUS_OK) {
      c->failed++;
    } else if (n == 5 && memcmp(out, "1.0.0", 5) == 0) {
      c->served_v1++;
    } else if (n == 5 && memcmp(out, "2.0.0", 5) == 0) {
      c->served_v2++;
    } else {
      c->failed++;
    }
  }
  return NULL;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PLUGIN_DIR\n", argv[0]);
    return 2;
  }
  char checksum_v1[4096], checksum_v2[4096], text[4096];
  snprintf(checksum_v1, sizeof checksum_v1, "%s/libchecksum.so", argv[1]);
  snprintf(checksum_v2, sizeof checksum_v2, "%s/libchecksum-v2.so", argv[1]);
  snprintf(text, sizeof text, "%s/libtext.so", argv[1]);

  printf("hotmod %s demo\n\n1. Load the example plugins (C and Rust)\n", hotmod_version_string());
  hotmod_runtime *rt = NULL;
  CHECK("hotmod_runtime_new", hotmod_runtime_new(&rt));
  CHECK("set_event_callback", hotmod_runtime_set_event_callback(rt, on_event, NULL, NULL));
  CHECK("register greeting", hotmod_runtime_register_host_function(rt, "greeting", greeting, NULL, NULL));
  CHECK("load checksum", hotmod_runtime_load(rt, checksum_v1, NULL, NULL));
  CHECK("load text", hotmod_runtime_load(rt, text, NULL, NULL));

  size_t count = 0;
  CHECK("module_count", hotmod_runtime_module_count(rt, &count));
  printf("\n2. Introspect\n");
  for (size_t i = 0; i < count; i++) {
    hotmod_module *m = NULL;
    const char *name, *version, *desc;
    size_t methods = 0;
    CHECK("module_at", hotmod_runtime_module_at(rt, i, &m));
    CHECK("name", hotmod_module_name(m, &name));
    CHECK("version", hotmod_module_version(m, &version));
    CHECK("description", hotmod_module_description(m, &desc));
    CHECK("method_count", hotmod_module_method_count(m, &methods));
    printf("  %s %s — %s\n", name, version, desc);
    for (size_t k = 0; k < methods; k++) {
      const char *mname, *sig;
      CHECK("method_info", hotmod_module_method_info(m, k, &mname, &sig));
      printf("      %-12s %s\n", mname, sig);
    }
    hotmod_module_free(m);
  }

  printf("\n3. Call\n");
  print_call(rt, "checksum", "crc32", "123456789", 9, 0);
  print_call(rt, "checksum", "hex", "hotmod", 6, 1);
  print_call(rt, "text", "upper", "hot swap", 8, 1);
  print_call(rt, "text", "reverse", "stressed", 8, 1);
  print_call(rt, "text", "greet", "C host", 6, 1);
  print_call(rt, "text", "repeat", "\003ab", 3, 1);
  hotmod_buffer *missing = NULL;
  hotmod_status st = hotmod_runtime_call(rt, "text", "shout", NULL, 0, &missing);
  printf("  text.shout -> %s (%d): %s\n", hotmod_status_str(st), (int)st, hotmod_last_error_message());

  printf("\n4. Upgrade checksum 1.0.0 -> 2.0.0 while %d threads keep calling it\n", CALLERS);
  atomic_int stop = 0;
  caller callers[CALLERS];
  pthread_t threads[CALLERS];
  for (int i = 0; i < CALLERS; i++) {
    memset(&callers[i], 0, sizeof callers[i]);
    callers[i].stop = &stop;
    CHECK("resolve version", hotmod_runtime_resolve(rt, "checksum", "version", &callers[i].version));
    CHECK("resolve crc32", hotmod_runtime_resolve(rt, "checksum", "crc32", &callers[i].crc32));
    pthread_create(&threads[i], NULL, call_loop, &callers[i]);
  }
  sleep_ms(100);
  CHECK("upgrade", hotmod_runtime_upgrade(rt, "checksum", checksum_v2, NULL, 0, NULL));
  sleep_ms(100);
  atomic_store(&stop, 1);
  unsigned long v1 = 0, v2 = 0, failed = 0;
  for (int i = 0; i < CALLERS; i++) {
    pthread_join(threads[i], NULL);
    v1 += callers[i].served_v1;
    v2 += callers[i].served_v2;
    failed += callers[i].failed;
    hotmod_method_free(callers[i].version);
    hotmod_method_free(callers[i].crc32);
  }
  printf("  calls served by 1.0.0: %lu\n  calls served by 2.0.0: %lu\n  failed calls:          %lu\n", v1, v2,
         failed);
  print_call(rt, "checksum", "calls", NULL, 0, 0);
  printf("  (checksum.calls counts every call since load: v1 handed its counter to v2)\n");

  printf("\n5. Metrics\n");
  hotmod_stats *stats = NULL;
  CHECK("stats", hotmod_runtime_stats(rt, &stats));
  CHECK("stats_count", hotmod_stats_count(stats, &count));
  printf("  %-9s %-8s %-11s %10s %7s %9s %9s\n", "module", "version", "method", "calls", "errors", "mean ns",
         "p99 ns");
  for (size_t i = 0; i < count; i++) {
    hotmod_method_stats s;
    CHECK("stats_get", hotmod_stats_get(stats, i, &s));
    printf("  %-9s %-8s %-11s %10llu %7llu %9llu %9llu\n", s.module, s.version, s.method,
           (unsigned long long)s.calls, (unsigned long long)s.errors, (unsigned long long)s.latency_mean_ns,
           (unsigned long long)s.latency_p99_ns);
  }
  hotmod_stats_free(stats);
  hotmod_buffer *prom = NULL;
  CHECK("prometheus", hotmod_runtime_stats_prometheus(rt, &prom));
  const uint8_t *pdata = NULL;
  size_t plen = 0;
  CHECK("buffer_data", hotmod_buffer_data(prom, &pdata, &plen));
  printf("  Prometheus exposition: %zu bytes, e.g.\n", plen);
  /* The buffer holds plen bytes and no terminating NUL: search a C string copy. */
  char *exposition = malloc(plen + 1);
  if (exposition == NULL) {
    fprintf(stderr, "demo: out of memory\n");
    return 1;
  }
  memcpy(exposition, pdata, plen);
  exposition[plen] = '\0';
  hotmod_buffer_free(prom);
  const char *line = strstr(exposition, "hotmod_method_calls_total{module=\"checksum\"");
  if (line != NULL) printf("    %.*s\n", (int)strcspn(line, "\n"), line);
  free(exposition);

  printf("\n6. Shut down\n");
  hotmod_runtime_free(rt);
  if (failed != 0) {
    fprintf(stderr, "demo: %lu calls failed during the upgrade\n", failed);
    return 1;
  }
  printf("\ndemo finished: upgrade under load with 0 failed calls\n");
  return 0;
}
