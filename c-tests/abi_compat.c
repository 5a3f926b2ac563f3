/*
 * abi_compat — the 1.0 ABI kept: a host compiled against the frozen 1.0
 * hotmod.h (c-tests/abi-1.0) and linked the way a 1.0 host was (against a
 * stub libhotmod.so.1 exporting exactly the HOTMOD_1.0 symbols, so every
 * reference it has is name@HOTMOD_1.0), run against the current library,
 * driving plugins compiled against the frozen 1.0 hotmod_plugin.h and one
 * built against today's header.
 *
 * Uses only check.h (not util.h, which follows the current API).
 * HOTMOD_COMPAT_PLUGIN_DIR: the directory holding the two 1.0 plugins
 * (libcompat-1.0.0.so, libcompat-1.0.1.so; c-tests/Makefile builds them).
 * HOTMOD_PLUGIN_DIR: today's plugins.
 */
#include <hotmod.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static char compat_v1[4096], compat_v2[4096], current[4096];

/* Every HOTMOD_1.0 function, referenced (symbols.inc is generated from the
 * frozen abi-1.0/symbols.txt): bound at start-up, so one that moved to
 * another node or disappeared stops the test before main. */
typedef void (*any_fn)(void);
#define HOTMOD_1_0_SYMBOL(name) (any_fn) name,
static any_fn const all_1_0_functions[] = {
#include "symbols.inc"
};
#undef HOTMOD_1_0_SYMBOL

typedef struct events {
  pthread_mutex_t lock;
  int logs, activated, frees;
  char last_log[256];
} events;

static void on_event(void *ud, const hotmod_event *e) {
  events *ev = ud;
  pthread_mutex_lock(&ev->lock);
  if (e->kind == HOTMOD_EVENT_KIND_LOG) {
    ev->logs++;
    snprintf(ev->last_log, sizeof ev->last_log, "%s", e->message);
  }
  if (e->kind == HOTMOD_EVENT_KIND_ACTIVATED) ev->activated++;
  pthread_mutex_unlock(&ev->lock);
}

static void free_events(void *ud) { ((events *)ud)->frees++; }

/* Host function "twice": its input two times, into the offered space. */
static int32_t twice(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  atomic_fetch_add((atomic_int *)ud, 1);
  if (out->capacity < 2 * len) return 1;
  memcpy(out->buf, in, len);
  memcpy(out->buf + len, in, len);
  out->data = out->buf;
  out->len = 2 * len;
  return 0;
}

static uint64_t call_u64(const hotmod_method *m) {
  uint64_t v = 0;
  size_t n = 0;
  if (hotmod_method_call_into(m, NULL, 0, (uint8_t *)&v, sizeof v, &n) != HOTMOD_STATUS_OK || n != sizeof v) return 0;
  return v;
}

int main(void) {
  check_last_error_hook = hotmod_last_error_message;
  check_status_str_hook = hotmod_status_str;
  const char *pdir = getenv("HOTMOD_PLUGIN_DIR");
  const char *cdir = getenv("HOTMOD_COMPAT_PLUGIN_DIR");
  REQUIRE(pdir != NULL && cdir != NULL);
  snprintf(compat_v1, sizeof compat_v1, "%s/libcompat-1.0.0.so", cdir);
  snprintf(compat_v2, sizeof compat_v2, "%s/libcompat-1.0.1.so", cdir);
  snprintf(current, sizeof current, "%s/libchecksum.so", pdir);

  for (size_t i = 0; i < sizeof all_1_0_functions / sizeof all_1_0_functions[0]; i++) CHECK(all_1_0_functions[i]);
  CHECK(sizeof all_1_0_functions / sizeof all_1_0_functions[0] == 45);

  /* The library is a 1.x release at least as new as this header. */
  const char *v = hotmod_version_string();
  CHECK(v != NULL && atoi(v) == HOTMOD_VERSION_MAJOR);

  hotmod_runtime *rt = NULL;
  CHECK_OK(hotmod_runtime_new(&rt));
  static events ev = {.lock = PTHREAD_MUTEX_INITIALIZER};
  CHECK_OK(hotmod_runtime_set_event_callback(rt, on_event, &ev, free_events));
  static atomic_int host_calls;
  CHECK_OK(hotmod_runtime_register_host_function(rt, "twice", twice, &host_calls, NULL));

  /* load with options, introspect */
  hotmod_load_options *o = NULL;
  CHECK_OK(hotmod_load_options_new(&o));
  CHECK_OK(hotmod_load_options_set_config(o, (const uint8_t *)"k=v", 3));
  CHECK_OK(hotmod_load_options_set_allow_world_writable(o, 0));
  hotmod_module *mod = NULL;
  CHECK_OK(hotmod_runtime_load(rt, compat_v1, o, &mod));
  REQUIRE(mod != NULL);
  const char *s = NULL;
  CHECK_OK(hotmod_module_name(mod, &s));
  CHECK_STR_EQ(s, "compat");
  CHECK_OK(hotmod_module_version(mod, &s));
  CHECK_STR_EQ(s, "1.0.0");
  CHECK_OK(hotmod_module_description(mod, &s));
  CHECK_STR_EQ(s, "Built against the 1.0 plugin header");
  CHECK_OK(hotmod_module_sha256(mod, &s));
  CHECK(s != NULL && strlen(s) == 64);
  CHECK_OK(hotmod_module_path(mod, &s));
  CHECK(s != NULL && strstr(s, "libcompat-1.0.0.so") != NULL);
  size_t n = 0;
  CHECK_OK(hotmod_module_method_count(mod, &n));
  CHECK(n == 7);
  const char *name = NULL, *sig = NULL;
  CHECK_OK(hotmod_module_method_info(mod, 0, &name, &sig));
  CHECK_STR_EQ(name, "echo");
  CHECK_STR_EQ(sig, "bytes -> bytes");
  CHECK_OK(hotmod_module_dependency_count(mod, &n));
  CHECK(n == 0);
  CHECK(ev.logs >= 1);
  CHECK_CONTAINS(ev.last_log, "compat plugin 1.0.0 initialised");

  /* calls: into caller space, owned, by name, plugin memory, errors */
  hotmod_method *echo = NULL, *count = NULL, *rev = NULL, *fail = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "compat", "echo", &echo));
  CHECK_OK(hotmod_module_resolve(mod, "count", &count));
  CHECK_OK(hotmod_runtime_resolve(rt, "compat", "reverse", &rev));
  CHECK_OK(hotmod_runtime_resolve(rt, "compat", "fail", &fail));
  uint8_t dst[64];
  CHECK_OK(hotmod_method_call_into(echo, (const uint8_t *)"hello", 5, dst, sizeof dst, &n));
  CHECK(n == 5 && memcmp(dst, "hello", 5) == 0);
  CHECK_STATUS(hotmod_method_call_into(echo, (const uint8_t *)"hello", 5, dst, 2, &n), HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  hotmod_buffer *b = NULL;
  const uint8_t *data = NULL;
  CHECK_OK(hotmod_method_call(rev, (const uint8_t *)"abc", 3, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &n));
  CHECK(n == 3 && memcmp(data, "cba", 3) == 0);
  hotmod_buffer_free(b);
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "compat", "config", NULL, 0, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &n));
  CHECK(n == 3 && memcmp(data, "k=v", 3) == 0);
  hotmod_buffer_free(b);
  uint32_t released = 0;
  CHECK_OK(hotmod_runtime_call_into(rt, "compat", "releases", NULL, 0, (uint8_t *)&released, sizeof released, &n));
  CHECK(n == 4 && released == 1);
  CHECK_STATUS(hotmod_method_call_into(fail, NULL, 0, dst, sizeof dst, &n), HOTMOD_STATUS_PLUGIN_ERROR);
  CHECK_CONTAINS(hotmod_last_error_message(), "compat.fail: failing on purpose");
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "compat", "via_host", (const uint8_t *)"ab", 2, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &n));
  CHECK(n == 4 && memcmp(data, "abab", 4) == 0);
  hotmod_buffer_free(b);
  CHECK(atomic_load(&host_calls) == 1);
  CHECK(call_u64(count) == 1);
  CHECK(call_u64(count) == 2);

  /* upgrade to another 1.0 build: state and handles carried over */
  hotmod_module *mod2 = NULL;
  CHECK_OK(hotmod_runtime_upgrade(rt, "compat", compat_v2, o, 0, &mod2));
  CHECK_OK(hotmod_module_version(mod2, &s));
  CHECK_STR_EQ(s, "1.0.1");
  CHECK(call_u64(count) == 3);
  hotmod_load_options_free(o);

  /* a plugin built against today's header next to it */
  CHECK_OK(hotmod_runtime_load(rt, current, NULL, NULL));
  CHECK_OK(hotmod_runtime_call_into(rt, "checksum", "crc32", (const uint8_t *)"123456789", 9, dst, sizeof dst, &n));
  CHECK(n == 4 && ((uint32_t)dst[0] | (uint32_t)dst[1] << 8 | (uint32_t)dst[2] << 16 | (uint32_t)dst[3] << 24) ==
                      0xCBF43926u);
  CHECK_OK(hotmod_runtime_module_count(rt, &n));
  CHECK(n == 2);
  hotmod_module *at = NULL;
  CHECK_OK(hotmod_runtime_module_at(rt, 1, &at));
  hotmod_module_free(at);
  at = NULL;
  CHECK_OK(hotmod_runtime_module(rt, "checksum", &at));
  hotmod_module_free(at);

  /* stats and Prometheus text through the 1.0 struct layout */
  hotmod_stats *st = NULL;
  CHECK_OK(hotmod_runtime_stats(rt, &st));
  CHECK_OK(hotmod_stats_count(st, &n));
  int found = 0;
  for (size_t i = 0; i < n; i++) {
    hotmod_method_stats ms;
    CHECK_OK(hotmod_stats_get(st, i, &ms));
    if (strcmp(ms.module, "compat") == 0 && strcmp(ms.method, "count") == 0) {
      found = 1;
      CHECK_U64_EQ(ms.calls, 3);
      CHECK_STR_EQ(ms.version, "1.0.1");
    }
    if (strcmp(ms.module, "compat") == 0 && strcmp(ms.method, "fail") == 0) CHECK_U64_EQ(ms.errors, 1);
  }
  CHECK(found);
  hotmod_stats_free(st);
  b = NULL;
  CHECK_OK(hotmod_runtime_stats_prometheus(rt, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &n));
  CHECK(n > 0);
  hotmod_buffer_free(b);

  /* statuses and their strings are those of 1.0 */
  CHECK_STR_EQ(hotmod_status_str(HOTMOD_STATUS_OK), "ok");
  CHECK(strlen(hotmod_status_str(HOTMOD_STATUS_STALE_HANDLE)) > 0);

  /* unload: handles go stale, never crash */
  CHECK_OK(hotmod_runtime_unload(rt, "compat", HOTMOD_UNLOAD_CASCADE));
  CHECK_STATUS(hotmod_method_call_into(echo, (const uint8_t *)"x", 1, dst, sizeof dst, &n), HOTMOD_STATUS_STALE_HANDLE);
  CHECK(ev.activated >= 2);

  hotmod_method_free(echo);
  hotmod_method_free(count);
  hotmod_method_free(rev);
  hotmod_method_free(fail);
  hotmod_module_free(mod);
  hotmod_module_free(mod2);
  hotmod_runtime_free(rt);
  CHECK(ev.frees == 1);
  return check_summary();
}
