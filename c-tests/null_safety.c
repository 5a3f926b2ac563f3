/*
 * null_safety.c — NULL for every pointer argument of every function of
 * include/hotmod.h, one at a time, with every other argument valid.
 *
 * Required pointers give HOTMOD_STATUS_NULL_ARGUMENT and a message naming
 * the argument; out-parameters are untouched on failure; parameters the
 * header calls optional accept NULL; every _free(NULL) is a no-op (called
 * twice); names and paths that are not UTF-8 give
 * HOTMOD_STATUS_INVALID_ARGUMENT.
 */
#include <pthread.h>
#include <unistd.h>

#include "util.h"

/* A call must fail with NULL_ARGUMENT and name the argument. */
#define EXPECT_NULL(call, arg)                                      \
  do {                                                              \
    CHECK_STATUS(call, HOTMOD_STATUS_NULL_ARGUMENT);                \
    CHECK_CONTAINS(hotmod_last_error_message(), "non-NULL " arg); \
  } while (0)

/* A call must fail with INVALID_ARGUMENT because of a non-UTF-8 string. */
#define EXPECT_NOT_UTF8(call)                                   \
  do {                                                          \
    CHECK_STATUS(call, HOTMOD_STATUS_INVALID_ARGUMENT);         \
    CHECK_CONTAINS(hotmod_last_error_message(), "UTF-8");       \
  } while (0)

static const char BAD[] = "check\xff\xfe"; /* not UTF-8 */
/* A path that is not UTF-8: accepted on Unix (paths are bytes), naming nothing. */
static const char BAD_PATH[] = "/nonexistent-\xff\xfe/libx.so";

/* A path argument that is not UTF-8 is used as given: the call fails on the
 * file (not on the encoding), and the message names it. */
#define EXPECT_PATH_USED(call, want)                                 \
  do {                                                               \
    CHECK_STATUS(call, want);                                        \
    CHECK_CONTAINS(hotmod_last_error_message(), "/nonexistent-");    \
  } while (0)
static const uint8_t IN[] = "123456789";

static int sentinel_storage;
#define SENT ((void *)&sentinel_storage) /* an out-param value nothing writes */
#define SENT_SIZE ((size_t)0xDEADBEEF)

static int frees;
static void count_free(void *ud) {
  (void)ud;
  frees++;
}
static int32_t host_fn(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  (void)ud;
  (void)in;
  (void)len;
  (void)out;
  return 0;
}
static void event_fn(void *ud, const hotmod_event *e) {
  (void)ud;
  (void)e;
}

static void *other_thread_error(void *arg) {
  const char **out = arg;
  out[0] = hotmod_last_error_message(); /* this thread never failed */
  out[0] = out[0] && out[0][0] == '\0' ? "" : "not empty";
  hotmod_runtime_module_count(NULL, NULL);
  out[1] = strstr(hotmod_last_error_message(), "non-NULL rt") ? "ok" : "wrong";
  return NULL;
}

int main(void) {
  util_init();

  /* ---- functions without pointer arguments never return NULL ---------- */
  CHECK(hotmod_version_string() != NULL);
  CHECK(hotmod_status_str(-12345) != NULL);
  CHECK_STR_EQ(hotmod_last_error_message(), ""); /* nothing failed yet */

  /* ---- constructors ---------------------------------------------------- */
  EXPECT_NULL(hotmod_runtime_new(NULL), "out");
  EXPECT_NULL(hotmod_load_options_new(NULL), "out");

  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK && rt);
  hotmod_module *m = NULL, *dm = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, &m)));
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libdependent.so"), NULL, &dm)));
  hotmod_method *h = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &h)));
  hotmod_buffer *b = NULL;
  REQUIRE(CHECK_OK(hotmod_method_call(h, IN, 9, &b)));
  hotmod_stats *s = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_stats(rt, &s)));
  hotmod_load_options *o = NULL;
  REQUIRE(CHECK_OK(hotmod_load_options_new(&o)));

  void *p;
  const char *str;
  size_t n;
  uint8_t dst[16];

  /* ---- hotmod_runtime_resolve ----------------------------------------- */
  p = SENT;
  EXPECT_NULL(hotmod_runtime_resolve(NULL, "checksum", "crc32", (hotmod_method **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_resolve(rt, NULL, "crc32", (hotmod_method **)&p), "module");
  EXPECT_NULL(hotmod_runtime_resolve(rt, "checksum", NULL, (hotmod_method **)&p), "method");
  EXPECT_NULL(hotmod_runtime_resolve(rt, "checksum", "crc32", NULL), "out");
  EXPECT_NOT_UTF8(hotmod_runtime_resolve(rt, BAD, "crc32", (hotmod_method **)&p));
  EXPECT_NOT_UTF8(hotmod_runtime_resolve(rt, "checksum", BAD, (hotmod_method **)&p));
  CHECK(p == SENT);

  /* ---- hotmod_method_call ---------------------------------------------- */
  p = SENT;
  EXPECT_NULL(hotmod_method_call(NULL, IN, 9, (hotmod_buffer **)&p), "m");
  EXPECT_NULL(hotmod_method_call(h, NULL, 9, (hotmod_buffer **)&p), "input");
  EXPECT_NULL(hotmod_method_call(h, IN, 9, NULL), "out");
  CHECK(p == SENT);
  hotmod_buffer *b0 = NULL;
  CHECK_OK(hotmod_method_call(h, NULL, 0, &b0)); /* NULL input of length 0 is allowed */
  hotmod_buffer_free(b0);

  /* ---- hotmod_method_call_into ----------------------------------------- */
  n = SENT_SIZE;
  EXPECT_NULL(hotmod_method_call_into(NULL, IN, 9, dst, sizeof dst, &n), "m");
  EXPECT_NULL(hotmod_method_call_into(h, NULL, 9, dst, sizeof dst, &n), "input");
  EXPECT_NULL(hotmod_method_call_into(h, IN, 9, NULL, sizeof dst, &n), "dst");
  EXPECT_NULL(hotmod_method_call_into(h, IN, 9, dst, sizeof dst, NULL), "out_len");
  /* NULL dst with capacity 0 is allowed: crc32 then does not fit. */
  CHECK_STATUS(hotmod_method_call_into(h, IN, 9, NULL, 0, &n), HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  CHECK(n == SENT_SIZE);
  CHECK_OK(hotmod_method_call_into(h, NULL, 0, dst, sizeof dst, &n));
  CHECK(n == 4);

  /* ---- hotmod_runtime_call --------------------------------------------- */
  p = SENT;
  EXPECT_NULL(hotmod_runtime_call(NULL, "checksum", "crc32", IN, 9, (hotmod_buffer **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_call(rt, NULL, "crc32", IN, 9, (hotmod_buffer **)&p), "module");
  EXPECT_NULL(hotmod_runtime_call(rt, "checksum", NULL, IN, 9, (hotmod_buffer **)&p), "method");
  EXPECT_NULL(hotmod_runtime_call(rt, "checksum", "crc32", NULL, 9, (hotmod_buffer **)&p), "input");
  EXPECT_NULL(hotmod_runtime_call(rt, "checksum", "crc32", IN, 9, NULL), "out");
  EXPECT_NOT_UTF8(hotmod_runtime_call(rt, BAD, "crc32", IN, 9, (hotmod_buffer **)&p));
  EXPECT_NOT_UTF8(hotmod_runtime_call(rt, "checksum", BAD, IN, 9, (hotmod_buffer **)&p));
  CHECK(p == SENT);
  b0 = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "checksum", "crc32", NULL, 0, &b0));
  hotmod_buffer_free(b0);

  /* ---- hotmod_runtime_call_into ---------------------------------------- */
  n = SENT_SIZE;
  EXPECT_NULL(hotmod_runtime_call_into(NULL, "checksum", "crc32", IN, 9, dst, sizeof dst, &n), "rt");
  EXPECT_NULL(hotmod_runtime_call_into(rt, NULL, "crc32", IN, 9, dst, sizeof dst, &n), "module");
  EXPECT_NULL(hotmod_runtime_call_into(rt, "checksum", NULL, IN, 9, dst, sizeof dst, &n), "method");
  EXPECT_NULL(hotmod_runtime_call_into(rt, "checksum", "crc32", NULL, 9, dst, sizeof dst, &n), "input");
  EXPECT_NULL(hotmod_runtime_call_into(rt, "checksum", "crc32", IN, 9, NULL, sizeof dst, &n), "dst");
  EXPECT_NULL(hotmod_runtime_call_into(rt, "checksum", "crc32", IN, 9, dst, sizeof dst, NULL), "out_len");
  EXPECT_NOT_UTF8(hotmod_runtime_call_into(rt, BAD, "crc32", IN, 9, dst, sizeof dst, &n));
  EXPECT_NOT_UTF8(hotmod_runtime_call_into(rt, "checksum", BAD, IN, 9, dst, sizeof dst, &n));
  CHECK(n == SENT_SIZE);
  CHECK_STATUS(hotmod_runtime_call_into(rt, "checksum", "crc32", IN, 9, NULL, 0, &n), HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  CHECK(n == SENT_SIZE);

  /* ---- hotmod_buffer_data ---------------------------------------------- */
  const uint8_t *data = SENT;
  n = SENT_SIZE;
  EXPECT_NULL(hotmod_buffer_data(NULL, &data, &n), "b");
  EXPECT_NULL(hotmod_buffer_data(b, NULL, &n), "data");
  EXPECT_NULL(hotmod_buffer_data(b, &data, NULL), "len");
  CHECK(data == SENT && n == SENT_SIZE);
  CHECK_OK(hotmod_buffer_data(b, &data, &n));
  CHECK(n == 4 && get_u32le(data) == 0xCBF43926u);

  /* ---- module introspection -------------------------------------------- */
  hotmod_status (*const strings[])(const hotmod_module *, const char **) = {
      hotmod_module_name, hotmod_module_version, hotmod_module_description, hotmod_module_path, hotmod_module_sha256,
  };
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
    str = SENT;
    EXPECT_NULL(strings[i](NULL, &str), "m");
    EXPECT_NULL(strings[i](m, NULL), "out");
    CHECK(str == (const char *)SENT);
    CHECK_OK(strings[i](m, &str));
    CHECK(str != NULL && str != (const char *)SENT);
  }
  n = SENT_SIZE;
  EXPECT_NULL(hotmod_module_method_count(NULL, &n), "m");
  EXPECT_NULL(hotmod_module_method_count(m, NULL), "out");
  EXPECT_NULL(hotmod_module_dependency_count(NULL, &n), "m");
  EXPECT_NULL(hotmod_module_dependency_count(m, NULL), "out");
  CHECK(n == SENT_SIZE);
  const char *a = SENT, *c = SENT;
  EXPECT_NULL(hotmod_module_method_info(NULL, 0, &a, &c), "m");
  EXPECT_NULL(hotmod_module_method_info(m, 0, NULL, &c), "name");
  EXPECT_NULL(hotmod_module_method_info(m, 0, &a, NULL), "signature");
  EXPECT_NULL(hotmod_module_dependency_info(NULL, 0, &a, &c), "m");
  EXPECT_NULL(hotmod_module_dependency_info(dm, 0, NULL, &c), "name");
  EXPECT_NULL(hotmod_module_dependency_info(dm, 0, &a, NULL), "requirement");
  CHECK(a == (const char *)SENT && c == (const char *)SENT);
  p = SENT;
  EXPECT_NULL(hotmod_module_resolve(NULL, "crc32", (hotmod_method **)&p), "m");
  EXPECT_NULL(hotmod_module_resolve(m, NULL, (hotmod_method **)&p), "name");
  EXPECT_NULL(hotmod_module_resolve(m, "crc32", NULL), "out");
  EXPECT_NOT_UTF8(hotmod_module_resolve(m, BAD, (hotmod_method **)&p));
  CHECK(p == SENT);

  /* ---- load options ----------------------------------------------------- */
  static const char ZEROS[] = "0000000000000000000000000000000000000000000000000000000000000000";
  EXPECT_NULL(hotmod_load_options_set_sha256(NULL, ZEROS), "opts");
  EXPECT_NULL(hotmod_load_options_set_sha256(o, NULL), "sha256_hex");
  EXPECT_NOT_UTF8(hotmod_load_options_set_sha256(o, BAD));
  EXPECT_NULL(hotmod_load_options_set_config(NULL, IN, 2), "opts");
  EXPECT_NULL(hotmod_load_options_set_config(o, NULL, 2), "config");
  CHECK_OK(hotmod_load_options_set_config(o, NULL, 0)); /* NULL with length 0 is allowed */
  EXPECT_NULL(hotmod_load_options_set_allow_world_writable(NULL, 1), "opts");
  EXPECT_NULL(hotmod_load_options_set_max_file_size(NULL, 1 << 20), "opts");
  EXPECT_NULL(hotmod_load_options_set_preflight(NULL, HOTMOD_PREFLIGHT_OFF), "opts");
  EXPECT_NULL(hotmod_load_options_set_preflight_helper(NULL, "/bin/true"), "opts");
  EXPECT_NULL(hotmod_load_options_set_preflight_helper(o, NULL), "path");
  EXPECT_NULL(hotmod_load_options_set_preflight_timeout_ms(NULL, 1000), "opts");
  /* A helper path that is not UTF-8 is kept as given (bytes), not refused. */
  CHECK_OK(hotmod_load_options_set_preflight_helper(o, BAD_PATH));

  /* ---- runtime options (1.1) -------------------------------------------- */
  EXPECT_NULL(hotmod_runtime_options_new(NULL), "out");
  hotmod_runtime_options *ro = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_options_new(&ro)) && ro);
  EXPECT_NULL(hotmod_runtime_options_set_drain_timeout_ms(NULL, 10), "opts");
  EXPECT_NULL(hotmod_runtime_options_set_max_output_size(NULL, 4096), "opts");
  EXPECT_NULL(hotmod_runtime_options_set_max_kept_mapped(NULL, 8), "opts");
  p = SENT;
  EXPECT_NULL(hotmod_runtime_new_with_options(ro, NULL), "out");
  EXPECT_NULL(hotmod_runtime_new_with_options(NULL, NULL), "out");
  CHECK(p == SENT);
  hotmod_runtime *rt2 = NULL;
  CHECK_OK(hotmod_runtime_new_with_options(NULL, &rt2)); /* opts are optional */
  CHECK(rt2 != NULL);
  hotmod_runtime_free(rt2);
  rt2 = NULL;
  CHECK_OK(hotmod_runtime_new_with_options(ro, &rt2));
  CHECK(rt2 != NULL);
  hotmod_runtime_free(rt2);
  hotmod_runtime_options_free(ro);

  /* ---- hotmod_runtime_kept_mapped (1.1) ---------------------------------- */
  n = SENT_SIZE;
  EXPECT_NULL(hotmod_runtime_kept_mapped(NULL, &n), "rt");
  EXPECT_NULL(hotmod_runtime_kept_mapped(rt, NULL), "out");
  CHECK(n == SENT_SIZE);

  /* ---- hotmod_module_elf_info (1.1) -------------------------------------- */
  hotmod_elf_info ei, ei_untouched;
  memset(&ei_untouched, 0x5A, sizeof ei_untouched);
  ei_untouched.size = sizeof ei_untouched;
  ei = ei_untouched;
  EXPECT_NULL(hotmod_module_elf_info(NULL, &ei), "m");
  EXPECT_NULL(hotmod_module_elf_info(m, NULL), "out");
  CHECK(memcmp(&ei, &ei_untouched, sizeof ei) == 0);

  /* ---- load / upgrade / unload ------------------------------------------ */
  const char *probe = PLUGIN("libprobe.so"), *v2 = PLUGIN("libchecksum-v2.so");
  p = SENT;
  EXPECT_NULL(hotmod_runtime_load(NULL, probe, NULL, (hotmod_module **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_load(rt, NULL, NULL, (hotmod_module **)&p), "path");
  EXPECT_PATH_USED(hotmod_runtime_load(rt, BAD_PATH, NULL, (hotmod_module **)&p), HOTMOD_STATUS_FILE_MISSING);
  CHECK(p == SENT);
  CHECK_OK(hotmod_runtime_load(rt, probe, NULL, NULL)); /* opts and out are optional */
  CHECK_OK(hotmod_runtime_unload(rt, "probe", 0));
  CHECK_OK(hotmod_runtime_load(rt, probe, o, NULL));
  CHECK_OK(hotmod_runtime_unload(rt, "probe", 0));

  EXPECT_NULL(hotmod_runtime_upgrade(NULL, "checksum", v2, NULL, 0, (hotmod_module **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_upgrade(rt, NULL, v2, NULL, 0, (hotmod_module **)&p), "name");
  EXPECT_NULL(hotmod_runtime_upgrade(rt, "checksum", NULL, NULL, 0, (hotmod_module **)&p), "path");
  EXPECT_NOT_UTF8(hotmod_runtime_upgrade(rt, BAD, v2, NULL, 0, (hotmod_module **)&p));
  EXPECT_PATH_USED(hotmod_runtime_upgrade(rt, "checksum", BAD_PATH, NULL, 0, (hotmod_module **)&p),
                   HOTMOD_STATUS_FILE_MISSING);
  CHECK(p == SENT);
  /* opts and out are optional (same version: the dependent accepts it). */
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", PLUGIN("libchecksum.so"), NULL, 0, NULL));

  EXPECT_NULL(hotmod_runtime_unload(NULL, "checksum", 0), "rt");
  EXPECT_NULL(hotmod_runtime_unload(rt, NULL, 0), "name");
  EXPECT_NOT_UTF8(hotmod_runtime_unload(rt, BAD, 0));

  /* ---- manifests and watched directories --------------------------------- */
  /* Real, valid arguments around each NULL: an empty manifest (no plugin)
   * in an empty private directory, so a missing NULL check changes
   * nothing and the calls below that succeed load nothing. */
  char tmpl[4096];
  const char *tmp = getenv("TMPDIR");
  snprintf(tmpl, sizeof tmpl, "%s/hotmod-null-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  const char *wdir = mkdtemp(tmpl);
  REQUIRE(wdir != NULL);
  char manifest[4200];
  snprintf(manifest, sizeof manifest, "%s/plugins.toml", wdir);
  FILE *mf = fopen(manifest, "w");
  REQUIRE(mf != NULL);
  REQUIRE(fputs("# no plugin\n", mf) >= 0 && fclose(mf) == 0);

  EXPECT_NULL(hotmod_runtime_apply_manifest(NULL, manifest), "rt");
  EXPECT_NULL(hotmod_runtime_apply_manifest(rt, NULL), "path");
  EXPECT_PATH_USED(hotmod_runtime_apply_manifest(rt, BAD_PATH), HOTMOD_STATUS_BAD_MANIFEST);
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));

  EXPECT_NULL(hotmod_runtime_watch_dir(NULL, wdir, 100, 0), "rt");
  EXPECT_NULL(hotmod_runtime_watch_dir(rt, NULL, 100, 0), "dir");
  EXPECT_PATH_USED(hotmod_runtime_watch_dir(rt, BAD_PATH, 100, HOTMOD_WATCH_UNLOAD_ON_REMOVE), HOTMOD_STATUS_FILE_MISSING);
  /* None of those started a watch: unwatching finds nothing. */
  CHECK_STATUS(hotmod_runtime_unwatch_dir(rt, wdir), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_OK(hotmod_runtime_watch_dir(rt, wdir, 100, 0));
  EXPECT_NULL(hotmod_runtime_unwatch_dir(NULL, wdir), "rt");
  EXPECT_NULL(hotmod_runtime_unwatch_dir(rt, NULL), "dir");
  EXPECT_PATH_USED(hotmod_runtime_unwatch_dir(rt, BAD_PATH), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_OK(hotmod_runtime_unwatch_dir(rt, wdir)); /* still watched until now */
  CHECK(unlink(manifest) == 0 && rmdir(wdir) == 0);

  /* ---- host functions and events ---------------------------------------- */
  /* user_data is optional and opaque; free_user_data is optional. A failed
   * registration runs free_user_data at once (the library owns user_data
   * from the call on, whatever the outcome), so nothing leaks. */
  frees = 0;
  EXPECT_NULL(hotmod_runtime_register_host_function(NULL, "f", host_fn, NULL, count_free), "rt");
  CHECK(frees == 1);
  EXPECT_NULL(hotmod_runtime_register_host_function(rt, NULL, host_fn, NULL, count_free), "name");
  CHECK(frees == 2);
  EXPECT_NULL(hotmod_runtime_register_host_function(rt, "f", NULL, NULL, count_free), "func");
  CHECK(frees == 3);
  EXPECT_NOT_UTF8(hotmod_runtime_register_host_function(rt, BAD, host_fn, NULL, count_free));
  CHECK(frees == 4);
  CHECK_OK(hotmod_runtime_register_host_function(rt, "f", host_fn, NULL, NULL));
  CHECK_OK(hotmod_runtime_register_host_function(rt, "g", host_fn, NULL, count_free));
  CHECK(frees == 4);

  EXPECT_NULL(hotmod_runtime_set_event_callback(NULL, event_fn, NULL, count_free), "rt");
  CHECK(frees == 5);
  CHECK_OK(hotmod_runtime_set_event_callback(rt, event_fn, NULL, NULL));
  CHECK_OK(hotmod_runtime_set_event_callback(rt, NULL, NULL, NULL)); /* NULL clears */
  CHECK_OK(hotmod_runtime_set_event_callback(rt, event_fn, NULL, count_free));
  CHECK(frees == 5);

  /* ---- lookups ----------------------------------------------------------- */
  p = SENT;
  EXPECT_NULL(hotmod_runtime_module(NULL, "checksum", (hotmod_module **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_module(rt, NULL, (hotmod_module **)&p), "name");
  EXPECT_NULL(hotmod_runtime_module(rt, "checksum", NULL), "out");
  EXPECT_NOT_UTF8(hotmod_runtime_module(rt, BAD, (hotmod_module **)&p));
  EXPECT_NULL(hotmod_runtime_module_at(NULL, 0, (hotmod_module **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_module_at(rt, 0, NULL), "out");
  CHECK(p == SENT);
  n = SENT_SIZE;
  EXPECT_NULL(hotmod_runtime_module_count(NULL, &n), "rt");
  EXPECT_NULL(hotmod_runtime_module_count(rt, NULL), "out");
  CHECK(n == SENT_SIZE);

  /* ---- statistics -------------------------------------------------------- */
  p = SENT;
  EXPECT_NULL(hotmod_runtime_stats(NULL, (hotmod_stats **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_stats(rt, NULL), "out");
  EXPECT_NULL(hotmod_runtime_stats_prometheus(NULL, (hotmod_buffer **)&p), "rt");
  EXPECT_NULL(hotmod_runtime_stats_prometheus(rt, NULL), "out");
  CHECK(p == SENT);
  n = SENT_SIZE;
  EXPECT_NULL(hotmod_stats_count(NULL, &n), "s");
  EXPECT_NULL(hotmod_stats_count(s, NULL), "out");
  CHECK(n == SENT_SIZE);
  hotmod_method_stats ms, untouched;
  memset(&untouched, 0x5A, sizeof untouched);
  ms = untouched;
  EXPECT_NULL(hotmod_stats_get(NULL, 0, &ms), "s");
  EXPECT_NULL(hotmod_stats_get(s, 0, NULL), "out");
  CHECK(memcmp(&ms, &untouched, sizeof ms) == 0);

  /* ---- the last error is per thread -------------------------------------- */
  hotmod_runtime_stats(rt, NULL);
  const char *seen[2] = {NULL, NULL};
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, other_thread_error, seen) == 0);
  pthread_join(t, NULL);
  CHECK_STR_EQ(seen[0], "");
  CHECK_STR_EQ(seen[1], "ok");
  CHECK_CONTAINS(hotmod_last_error_message(), "non-NULL out"); /* ours is unchanged */

  /* ---- _free(NULL) is a no-op, every time -------------------------------- */
  for (int i = 0; i < 2; i++) {
    hotmod_method_free(NULL);
    hotmod_buffer_free(NULL);
    hotmod_module_free(NULL);
    hotmod_stats_free(NULL);
    hotmod_load_options_free(NULL);
    hotmod_runtime_options_free(NULL);
    hotmod_runtime_free(NULL);
  }
  CHECK(1);

  /* Everything still works after all that. */
  CHECK_OK(hotmod_method_call_into(h, IN, 9, dst, sizeof dst, &n));
  CHECK(n == 4 && get_u32le(dst) == 0xCBF43926u);

  hotmod_load_options_free(o);
  hotmod_stats_free(s);
  hotmod_buffer_free(b);
  hotmod_method_free(h);
  hotmod_module_free(dm);
  hotmod_module_free(m);
  hotmod_runtime_free(rt);
  CHECK(frees == 7); /* plus "g" and the last event callback, each once */
  return check_summary();
}
