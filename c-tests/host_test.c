/*
 * host_test.c — a C host linked with -lhotmod, exercising the C API as
 * include/hotmod.h documents it: versions and status strings, loading and
 * introspection, calls (by handle, into a caller buffer, by name, zero-copy
 * plugin memory), host functions, events, statistics, unload, upgrade,
 * dependencies between modules, and what survives hotmod_runtime_free.
 *
 * Plugins: $HOTMOD_PLUGIN_DIR (checksum, checksum-v2, text, probe,
 * lifecycle, tls, and the fixtures dependent, checksum-breaking and badout
 * from tests/fixtures), built by make plugins at the root.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static const char DIGITS[] = "123456789";

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

static int module_is(const hotmod_module *m, const char *name, const char *version) {
  const char *n = NULL, *v = NULL;
  return hotmod_module_name(m, &n) == HOTMOD_STATUS_OK && hotmod_module_version(m, &v) == HOTMOD_STATUS_OK &&
         strcmp(n, name) == 0 && strcmp(v, version) == 0;
}

static uint32_t crc_by_handle(const hotmod_method *m, hotmod_status *st) {
  uint8_t dst[4];
  size_t n = 0;
  *st = hotmod_method_call_into(m, (const uint8_t *)DIGITS, 9, dst, sizeof dst, &n);
  return *st == HOTMOD_STATUS_OK && n == 4 ? get_u32le(dst) : 0;
}

static uint64_t call_u64(const hotmod_runtime *rt, const char *module, const char *method, const void *in, size_t len) {
  uint8_t dst[8];
  size_t n = 0;
  hotmod_status st = hotmod_runtime_call_into(rt, module, method, in, len, dst, sizeof dst, &n);
  if (!CHECK_OK(st) || !CHECK(n == 8)) return UINT64_MAX;
  return get_u64le(dst);
}

/* ------------------------------------------------------------------------ */
/* version and status strings                                                */

static void test_version_and_status(void) {
  CHECK_STR_EQ(hotmod_version_string(), HOTMOD_VERSION_STRING);
  char expect[64];
  snprintf(expect, sizeof expect, "%d.%d.%d", HOTMOD_VERSION_MAJOR, HOTMOD_VERSION_MINOR, HOTMOD_VERSION_PATCH);
  CHECK_STR_EQ(hotmod_version_string(), expect);

  CHECK_STR_EQ(hotmod_status_str(HOTMOD_STATUS_OK), "ok");
  static const int32_t known[] = {
      HOTMOD_STATUS_OK,
      HOTMOD_STATUS_FILE_MISSING,
      HOTMOD_STATUS_DEPENDENCY_UNSATISFIED,
      HOTMOD_STATUS_PERMISSION_DENIED,
      HOTMOD_STATUS_ENTRY_SYMBOL_MISSING,
      HOTMOD_STATUS_NOT_A_LIBRARY,
      HOTMOD_STATUS_NOT_A_PLUGIN,
      HOTMOD_STATUS_ABI_UNSUPPORTED,
      HOTMOD_STATUS_INVALID_DESCRIPTOR,
      HOTMOD_STATUS_HASH_MISMATCH,
      HOTMOD_STATUS_SIGNATURE_MISMATCH,
      HOTMOD_STATUS_NAME_CONFLICT,
      HOTMOD_STATUS_DEPENDENCY_CYCLE,
      HOTMOD_STATUS_INIT_FAILED,
      HOTMOD_STATUS_BAD_MANIFEST,
      HOTMOD_STATUS_VERSION_CONFLICT,
      HOTMOD_STATUS_UNSAFE_FILE,
      HOTMOD_STATUS_FILE_TOO_LARGE,
      HOTMOD_STATUS_PREFLIGHT_FAILED,
      HOTMOD_STATUS_KEPT_MAPPED_LIMIT,
      HOTMOD_STATUS_SANDBOX_UNAVAILABLE,
      HOTMOD_STATUS_WORKER_UNAVAILABLE,
      HOTMOD_STATUS_METHOD_NOT_FOUND,
      HOTMOD_STATUS_MODULE_NOT_FOUND,
      HOTMOD_STATUS_PLUGIN_ERROR,
      HOTMOD_STATUS_PLUGIN_PANICKED,
      HOTMOD_STATUS_PLUGIN_CRASHED,
      HOTMOD_STATUS_TIMEOUT,
      HOTMOD_STATUS_CIRCUIT_OPEN,
      HOTMOD_STATUS_STALE_HANDLE,
      HOTMOD_STATUS_OUTPUT_TOO_LARGE,
      HOTMOD_STATUS_SIGNATURE_CHANGED,
      HOTMOD_STATUS_INVALID_OUTPUT,
      HOTMOD_STATUS_NULL_ARGUMENT,
      HOTMOD_STATUS_INVALID_ARGUMENT,
      HOTMOD_STATUS_BUSY,
      HOTMOD_STATUS_MODULE_IN_USE,
      HOTMOD_STATUS_IO,
      HOTMOD_STATUS_INTERNAL,
  };
  /* The documented numbers are stable. */
  CHECK(HOTMOD_STATUS_FILE_MISSING == 1001 && HOTMOD_STATUS_NOT_A_PLUGIN == 1006 &&
        HOTMOD_STATUS_UNSAFE_FILE == 1016 && HOTMOD_STATUS_WORKER_UNAVAILABLE == 1021 &&
        HOTMOD_STATUS_METHOD_NOT_FOUND == 2001 &&
        HOTMOD_STATUS_NULL_ARGUMENT == 3001 && HOTMOD_STATUS_INTERNAL == 9002);
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    const char *s = hotmod_status_str(known[i]);
    if (!CHECK(s != NULL && *s != '\0' && strcmp(s, "unknown status") != 0)) {
      fprintf(stderr, "    status %d has no description\n", (int)known[i]);
    }
    for (size_t j = 0; j < i; j++) { /* descriptions tell codes apart */
      if (!CHECK(strcmp(s, hotmod_status_str(known[j])) != 0)) {
        fprintf(stderr, "    statuses %d and %d share \"%s\"\n", (int)known[i], (int)known[j], s);
      }
    }
  }
  CHECK_CONTAINS(hotmod_status_str(HOTMOD_STATUS_FILE_MISSING), "not found");
  static const int32_t unknown[] = {-1, 1, 42, 1000, 1022, 2012, 3005, 9003, INT32_MIN, INT32_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    CHECK_STR_EQ(hotmod_status_str(unknown[i]), "unknown status");
  }
  CHECK(hotmod_last_error_message() != NULL);
}

/* ------------------------------------------------------------------------ */
/* load and introspection                                                    */

static void test_load_and_introspect(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK && rt != NULL);

  const char *path = PLUGIN("libchecksum.so");
  hotmod_module *m = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, path, NULL, &m)) && m != NULL);
  const char *s = NULL;
  CHECK_OK(hotmod_module_name(m, &s));
  CHECK_STR_EQ(s, "checksum");
  CHECK_OK(hotmod_module_version(m, &s));
  CHECK_STR_EQ(s, "1.0.0");
  CHECK_OK(hotmod_module_description(m, &s));
  CHECK_STR_EQ(s, "Checksums and hex encoding (C example)");
  CHECK_OK(hotmod_module_path(m, &s));
  CHECK_STR_EQ(s, path);
  char sum[65] = "";
  REQUIRE(sha256sum(path, sum));
  CHECK_OK(hotmod_module_sha256(m, &s));
  CHECK_STR_EQ(s, sum);

  static const char *const names[] = {"crc32", "adler32", "fnv1a64", "length", "hex", "version", "calls"};
  static const char *const sigs[] = {
      "bytes -> u32le", "bytes -> u32le", "bytes -> u64le", "bytes -> u64le", "bytes -> ascii (plugin memory)",
      "() -> ascii",    "() -> u64le",
  };
  size_t n = 0;
  CHECK_OK(hotmod_module_method_count(m, &n));
  CHECK_U64_EQ(n, 7);
  for (size_t i = 0; i < 7 && i < n; i++) {
    const char *name = NULL, *sig = NULL;
    CHECK_OK(hotmod_module_method_info(m, i, &name, &sig));
    CHECK_STR_EQ(name, names[i]);
    CHECK_STR_EQ(sig, sigs[i]);
  }
  const char *untouched_a = "a", *untouched_b = "b";
  const char *a = untouched_a, *b = untouched_b;
  CHECK_STATUS(hotmod_module_method_info(m, 7, &a, &b), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK(a == untouched_a && b == untouched_b);
  CHECK_CONTAINS(hotmod_last_error_message(), "7");
  CHECK_OK(hotmod_module_dependency_count(m, &n));
  CHECK_U64_EQ(n, 0);
  CHECK_STATUS(hotmod_module_dependency_info(m, 0, &a, &b), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK(a == untouched_a && b == untouched_b);

  /* `out` is optional. */
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libtext.so"), NULL, NULL));
  hotmod_module *t = NULL;
  CHECK_OK(hotmod_runtime_module(rt, "text", &t));
  CHECK(module_is(t, "text", "1.0.0"));
  CHECK_OK(hotmod_module_method_count(t, &n));
  CHECK_U64_EQ(n, 6);
  CHECK_OK(hotmod_module_description(t, &s));
  CHECK_STR_EQ(s, "Text transforms (Rust SDK example)");
  hotmod_module_free(t);

  /* A relative path is resolved against the current directory, and the
   * module reports it absolute. */
  char cwd[4096];
  REQUIRE(getcwd(cwd, sizeof cwd) != NULL);
  REQUIRE(chdir(util_env_dir("HOTMOD_PLUGIN_DIR")) == 0);
  char here[4096], want[4200];
  REQUIRE(getcwd(here, sizeof here) != NULL);
  snprintf(want, sizeof want, "%s/libprobe.so", here);
  hotmod_module *p = NULL;
  CHECK_OK(hotmod_runtime_load(rt, "libprobe.so", NULL, &p));
  REQUIRE(chdir(cwd) == 0);
  if (p) {
    CHECK_OK(hotmod_module_path(p, &s));
    CHECK_STR_EQ(s, want);
    hotmod_module_free(p);
  }

  /* Listing, in name order. */
  CHECK_OK(hotmod_runtime_module_count(rt, &n));
  CHECK_U64_EQ(n, 3);
  static const char *const order[] = {"checksum", "probe", "text"};
  for (size_t i = 0; i < 3; i++) {
    hotmod_module *x = NULL;
    CHECK_OK(hotmod_runtime_module_at(rt, i, &x));
    CHECK_OK(hotmod_module_name(x, &s));
    CHECK_STR_EQ(s, order[i]);
    hotmod_module_free(x);
  }
  hotmod_module *sentinel = (hotmod_module *)&n, *x = sentinel;
  CHECK_STATUS(hotmod_runtime_module_at(rt, 3, &x), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK(x == sentinel);
  CHECK_STATUS(hotmod_runtime_module(rt, "nope", &x), HOTMOD_STATUS_MODULE_NOT_FOUND);
  CHECK(x == sentinel);
  CHECK_CONTAINS(hotmod_last_error_message(), "nope");
  CHECK_CONTAINS(hotmod_last_error_message(), "checksum"); /* lists what is loaded */

  /* Two handles to one module are independent: freeing one leaves the other. */
  hotmod_module *m2 = NULL;
  CHECK_OK(hotmod_runtime_module(rt, "checksum", &m2));
  CHECK(m2 != NULL && m2 != m);
  hotmod_module_free(m);
  CHECK(module_is(m2, "checksum", "1.0.0"));
  hotmod_module_free(m2);
  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* calls                                                                     */

static void probe_counts(const hotmod_runtime *rt, uint64_t *gives, uint64_t *releases) {
  uint8_t dst[16];
  size_t n = 0;
  CHECK_OK(hotmod_runtime_call_into(rt, "probe", "counts", NULL, 0, dst, sizeof dst, &n));
  *gives = n == 16 ? get_u64le(dst) : UINT64_MAX;
  *releases = n == 16 ? get_u64le(dst + 8) : UINT64_MAX;
}

static void test_calls(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, NULL)));
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libtext.so"), NULL, NULL)));
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libprobe.so"), NULL, NULL)));

  /* By handle, into a library buffer. */
  hotmod_method *crc = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc)));
  hotmod_buffer *b = NULL;
  CHECK_OK(hotmod_method_call(crc, (const uint8_t *)DIGITS, 9, &b));
  const uint8_t *data = NULL;
  size_t len = 0;
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK_U64_EQ(len, 4);
  if (len == 4) CHECK_U64_EQ(get_u32le(data), CRC32_123456789);
  hotmod_buffer_free(b);
  /* Empty input may be NULL. */
  b = NULL;
  CHECK_OK(hotmod_method_call(crc, NULL, 0, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  if (CHECK(len == 4)) CHECK_U64_EQ(get_u32le(data), 0);
  hotmod_buffer_free(b);

  /* By handle, into the caller's buffer. */
  uint8_t dst[64];
  size_t out_len = 12345;
  CHECK_OK(hotmod_method_call_into(crc, (const uint8_t *)DIGITS, 9, dst, 4, &out_len));
  CHECK_U64_EQ(out_len, 4);
  CHECK_U64_EQ(get_u32le(dst), CRC32_123456789);
  out_len = 12345;
  CHECK_STATUS(hotmod_method_call_into(crc, (const uint8_t *)DIGITS, 9, dst, 2, &out_len),
               HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  CHECK_U64_EQ(out_len, 12345); /* untouched on failure */
  CHECK_CONTAINS(hotmod_last_error_message(), "4");
  CHECK_CONTAINS(hotmod_last_error_message(), "crc32");
  CHECK_STATUS(hotmod_method_call_into(crc, (const uint8_t *)DIGITS, 9, NULL, 0, &out_len),
               HOTMOD_STATUS_OUTPUT_TOO_LARGE);

  /* By name. */
  CHECK_U64_EQ(call_u64(rt, "checksum", "fnv1a64", NULL, 0), 0xcbf29ce484222325ull);
  static uint8_t big[100000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
  CHECK_U64_EQ(call_u64(rt, "checksum", "length", big, sizeof big), sizeof big);
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "checksum", "adler32", (const uint8_t *)"Wikipedia", 9, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  if (CHECK(len == 4)) CHECK_U64_EQ(get_u32le(data), 0x11E60398u);
  hotmod_buffer_free(b);
  out_len = 0;
  CHECK_OK(hotmod_runtime_call_into(rt, "checksum", "crc32", (const uint8_t *)DIGITS, 9, dst, sizeof dst, &out_len));
  CHECK(out_len == 4 && get_u32le(dst) == CRC32_123456789);

  hotmod_buffer *bsent = (hotmod_buffer *)&len;
  b = bsent;
  CHECK_STATUS(hotmod_runtime_call(rt, "checksum", "crc64", NULL, 0, &b), HOTMOD_STATUS_METHOD_NOT_FOUND);
  CHECK(b == bsent);
  CHECK_CONTAINS(hotmod_last_error_message(), "crc64");
  CHECK_CONTAINS(hotmod_last_error_message(), "crc32"); /* lists what exists */
  CHECK_STATUS(hotmod_runtime_call(rt, "nope", "crc32", NULL, 0, &b), HOTMOD_STATUS_MODULE_NOT_FOUND);
  CHECK(b == bsent);
  CHECK_CONTAINS(hotmod_last_error_message(), "nope");
  hotmod_method *msent = (hotmod_method *)&len, *mh = msent;
  CHECK_STATUS(hotmod_runtime_resolve(rt, "checksum", "crc64", &mh), HOTMOD_STATUS_METHOD_NOT_FOUND);
  CHECK_STATUS(hotmod_runtime_resolve(rt, "nope", "crc32", &mh), HOTMOD_STATUS_MODULE_NOT_FOUND);
  CHECK(mh == msent);

  /* Resolve through a module handle. */
  hotmod_module *cm = NULL;
  CHECK_OK(hotmod_runtime_module(rt, "checksum", &cm));
  hotmod_method *fnv = NULL;
  CHECK_OK(hotmod_module_resolve(cm, "fnv1a64", &fnv));
  CHECK_OK(hotmod_method_call_into(fnv, (const uint8_t *)"a", 1, dst, 8, &out_len));
  CHECK_U64_EQ(get_u64le(dst), 0xaf63dc4c8601ec8cull);
  mh = msent;
  CHECK_STATUS(hotmod_module_resolve(cm, "nope", &mh), HOTMOD_STATUS_METHOD_NOT_FOUND);
  CHECK(mh == msent);
  hotmod_method_free(fnv);
  hotmod_module_free(cm);

  /* Zero-copy output: hex hands over plugin memory. */
  CHECK_CALL_STR(call_str(rt, "checksum", "hex", "\x01\xab\xff", NULL), "01abff");
  hotmod_method *hex = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "hex", &hex));
  b = NULL;
  CHECK_OK(hotmod_method_call(hex, big, 5000, &b)); /* larger than the library's first offer */
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK_U64_EQ(len, 10000);
  if (len == 10000) CHECK(memcmp(data, "00070e151c232a31", 16) == 0);
  hotmod_buffer_free(b);
  hotmod_method_free(hex);

  /* Zero-copy proven with probe: the plugin sees the caller's input
   * address, and its memory is released exactly when the buffer is freed. */
  uint8_t in[32] = "zero-copy input";
  CHECK_U64_EQ(call_u64(rt, "probe", "addr", in, sizeof in), (uint64_t)(uintptr_t)in);
  hotmod_method *addr = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "probe", "addr", &addr));
  out_len = 0;
  CHECK_OK(hotmod_method_call_into(addr, big, sizeof big, dst, 8, &out_len));
  CHECK_U64_EQ(get_u64le(dst), (uint64_t)(uintptr_t)big);
  hotmod_method_free(addr);

  uint64_t g0, r0, g1, r1;
  probe_counts(rt, &g0, &r0);
  CHECK(g0 == r0);
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "probe", "give", (const uint8_t *)"hello", 5, &b));
  probe_counts(rt, &g1, &r1);
  CHECK_U64_EQ(g1, g0 + 1);
  CHECK_U64_EQ(r1, r0); /* still held by the buffer */
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK(len == 5 && memcmp(data, "hello", 5) == 0);
  hotmod_buffer_free(b);
  probe_counts(rt, &g1, &r1);
  CHECK_U64_EQ(r1, r0 + 1); /* released once, on free */
  /* call_into copies plugin memory into the caller's buffer and releases it at once. */
  CHECK_OK(hotmod_runtime_call_into(rt, "probe", "give", (const uint8_t *)"abc", 3, dst, sizeof dst, &out_len));
  CHECK(out_len == 3 && memcmp(dst, "abc", 3) == 0);
  probe_counts(rt, &g1, &r1);
  CHECK(g1 == g0 + 2 && r1 == r0 + 2);
  /* ... or refuses when it does not fit, and still releases it. */
  CHECK_STATUS(hotmod_runtime_call_into(rt, "probe", "give", (const uint8_t *)"abcdef", 6, dst, 2, &out_len),
               HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  probe_counts(rt, &g1, &r1);
  CHECK(g1 == g0 + 3 && r1 == r0 + 3);
  /* An empty plugin-memory output. */
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "probe", "give", NULL, 0, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK_U64_EQ(len, 0);
  hotmod_buffer_free(b);
  probe_counts(rt, &g1, &r1);
  CHECK_U64_EQ(g1, r1); /* nothing leaks, even for an empty output */

  /* Output larger than the library's first offer, written into host space. */
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "probe", "echo", big, 3000, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK(len == 3000 && memcmp(data, big, 3000) == 0);
  hotmod_buffer_free(b);
  /* A method that writes nothing. */
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "probe", "noop", (const uint8_t *)"x", 1, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK_U64_EQ(len, 0);
  hotmod_buffer_free(b);

  /* Rust SDK plugin. */
  CHECK_CALL_STR(call_str(rt, "text", "upper", "hello, World", NULL), "HELLO, WORLD");
  CHECK_CALL_STR(call_str(rt, "text", "reverse", "h\xc3\xa9llo", NULL), "oll\xc3\xa9h");
  uint8_t rep[4] = {3, 'a', 'b', 'c'};
  b = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "text", "repeat", rep, 4, &b));
  char *r = buf_strdup(b);
  CHECK_STR_EQ(r, "abcabcabc");
  free(r);
  hotmod_buffer_free(b);
  CHECK_U64_EQ(call_u64(rt, "text", "word_count", " one two  three ", 16), 3);

  /* Plugin failures: status, message from the plugin, no output. */
  b = bsent;
  CHECK_STATUS(hotmod_runtime_call(rt, "probe", "fail", NULL, 0, &b), HOTMOD_STATUS_PLUGIN_ERROR);
  CHECK(b == bsent);
  CHECK_CONTAINS(hotmod_last_error_message(), "probe: failure requested");
  CHECK_CONTAINS(hotmod_last_error_message(), "fail");
  CHECK_STATUS(hotmod_runtime_call(rt, "probe", "bad_input", NULL, 0, &b), HOTMOD_STATUS_PLUGIN_ERROR);
  CHECK_CONTAINS(hotmod_last_error_message(), "probe: input rejected");
  CHECK_STATUS(hotmod_runtime_call(rt, "text", "reverse", (const uint8_t *)"\xff\xfe", 2, &b),
               HOTMOD_STATUS_PLUGIN_ERROR);
  CHECK_CONTAINS(hotmod_last_error_message(), "UTF-8");
  CHECK(b == bsent);
  /* The last error is per thread and survives successful calls. */
  CHECK_OK(hotmod_method_call_into(crc, (const uint8_t *)DIGITS, 9, dst, 4, &out_len));
  CHECK_CONTAINS(hotmod_last_error_message(), "UTF-8");

  hotmod_method_free(crc);
  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* plugins that break the output protocol                                    */

static void test_bad_outputs(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libbadout.so"), NULL, NULL)));
  hotmod_buffer *sent = (hotmod_buffer *)&rt, *b = sent;
  uint8_t dst[16];
  size_t n = 777;

  CHECK_STATUS(hotmod_runtime_call(rt, "badout", "overflow", NULL, 0, &b), HOTMOD_STATUS_INVALID_OUTPUT);
  CHECK_CONTAINS(hotmod_last_error_message(), "overflow");
  CHECK_STATUS(hotmod_runtime_call_into(rt, "badout", "overflow", NULL, 0, dst, sizeof dst, &n),
               HOTMOD_STATUS_INVALID_OUTPUT);
  CHECK_STATUS(hotmod_runtime_call(rt, "badout", "nulldata", NULL, 0, &b), HOTMOD_STATUS_INVALID_OUTPUT);
  CHECK_CONTAINS(hotmod_last_error_message(), "nulldata");
  CHECK_STATUS(hotmod_runtime_call_into(rt, "badout", "nulldata", NULL, 0, dst, sizeof dst, &n),
               HOTMOD_STATUS_INVALID_OUTPUT);
  CHECK_STATUS(hotmod_runtime_call(rt, "badout", "greedy", NULL, 0, &b), HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  CHECK_STATUS(hotmod_runtime_call_into(rt, "badout", "greedy", NULL, 0, dst, sizeof dst, &n),
               HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  CHECK_CONTAINS(hotmod_last_error_message(), "17"); /* the size it asked for */
  CHECK_STATUS(hotmod_runtime_call(rt, "badout", "weird", NULL, 0, &b), HOTMOD_STATUS_PLUGIN_ERROR);
  CHECK_CONTAINS(hotmod_last_error_message(), "99");
  CHECK(b == sent && n == 777);
  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* calls in flight during unload and upgrade                                 */

typedef struct sleeper {
  const hotmod_method *m;
  uint32_t ms;
  hotmod_status status;
} sleeper;

static void *sleep_call(void *arg) {
  sleeper *s = arg;
  uint8_t in[4] = {(uint8_t)s->ms, (uint8_t)(s->ms >> 8), 0, 0};
  uint8_t dst[1];
  size_t n = 0;
  s->status = hotmod_method_call_into(s->m, in, 4, dst, 0, &n);
  return NULL;
}

static void test_in_flight(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libprobe.so"), NULL, NULL)));
  hotmod_method *sleep = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "probe", "sleep_ms", &sleep)));

  /* Unload while a call sleeps in the plugin: it finishes on the code it
   * started in (which must stay mapped until it returns); new calls are
   * refused at once. 400 ms outlasts the runtime's drain wait. */
  sleeper s = {sleep, 400, -1};
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, sleep_call, &s) == 0);
  struct timespec ts = {0, 100 * 1000 * 1000};
  nanosleep(&ts, NULL);
  CHECK_OK(hotmod_runtime_unload(rt, "probe", 0));
  sleeper late = {sleep, 0, -1};
  sleep_call(&late);
  CHECK_STATUS(late.status, HOTMOD_STATUS_STALE_HANDLE);
  pthread_join(t, NULL);
  CHECK_OK(s.status);

  /* The same across an upgrade: the old version finishes the call. */
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libprobe.so"), NULL, NULL)));
  hotmod_method_free(sleep);
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "probe", "sleep_ms", &sleep)));
  s.m = sleep;
  s.status = -1;
  REQUIRE(pthread_create(&t, NULL, sleep_call, &s) == 0);
  nanosleep(&ts, NULL);
  CHECK_OK(hotmod_runtime_upgrade(rt, "probe", PLUGIN("libprobe.so"), NULL, 0, NULL));
  late.m = sleep;
  sleep_call(&late);
  CHECK_OK(late.status);
  pthread_join(t, NULL);
  CHECK_OK(s.status);

  hotmod_method_free(sleep);
  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* host functions                                                            */

typedef struct greeting_data {
  const char *word;
  int calls;
  int frees;
  int releases;
  char last_input[64];
} greeting_data;

static void greeting_free(void *ud) { ((greeting_data *)ud)->frees++; }

/* Copies the word into the space the plugin offered. */
static int32_t greeting_copy(void *ud, const uint8_t *input, size_t input_len, hotmod_output *out) {
  greeting_data *g = ud;
  g->calls++;
  size_t n = input_len < sizeof g->last_input - 1 ? input_len : sizeof g->last_input - 1;
  memcpy(g->last_input, input, n);
  g->last_input[n] = '\0';
  return hotmod_output_write(out, g->word, strlen(g->word)) == HOTMOD_PLUGIN_OK ? 0 : 1;
}

static void greeting_release(void *ctx, const uint8_t *data, size_t len) {
  greeting_data *g = ctx;
  (void)len;
  g->releases++;
  free((void *)(uintptr_t)data);
}

/* Hands over memory of its own, released by the plugin. */
static int32_t greeting_give(void *ud, const uint8_t *input, size_t input_len, hotmod_output *out) {
  greeting_data *g = ud;
  (void)input;
  (void)input_len;
  g->calls++;
  size_t n = strlen(g->word);
  uint8_t *copy = malloc(n);
  if (copy == NULL) return 1;
  memcpy(copy, g->word, n);
  hotmod_output_give(out, copy, n, greeting_release, g);
  return 0;
}

static int32_t greeting_fails(void *ud, const uint8_t *input, size_t input_len, hotmod_output *out) {
  (void)input;
  (void)input_len;
  (void)out;
  ((greeting_data *)ud)->calls++;
  return 7;
}

static void test_host_functions(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libtext.so"), NULL, NULL)));

  /* Not registered: the plugin falls back. */
  CHECK_CALL_STR(call_str(rt, "text", "greet", "Ann", NULL), "Hello, Ann!");

  greeting_data a = {"Howdy", 0, 0, 0, ""}, b = {"Bonjour", 0, 0, 0, ""}, c = {"", 0, 0, 0, ""};
  CHECK_OK(hotmod_runtime_register_host_function(rt, "greeting", greeting_copy, &a, greeting_free));
  CHECK_CALL_STR(call_str(rt, "text", "greet", "Ann", NULL), "Howdy, Ann!");
  CHECK(a.calls == 1);
  CHECK_STR_EQ(a.last_input, "Ann");
  CHECK(a.frees == 0);

  /* Replacing frees the previous user_data, exactly once. */
  CHECK_OK(hotmod_runtime_register_host_function(rt, "greeting", greeting_give, &b, greeting_free));
  CHECK(a.frees == 1);
  CHECK_CALL_STR(call_str(rt, "text", "greet", "Bob", NULL), "Bonjour, Bob!");
  CHECK(b.calls == 1 && b.releases == 1); /* the plugin released the host's memory */
  CHECK(a.calls == 1 && a.frees == 1 && b.frees == 0);

  /* A failing host function is reported to the plugin (which falls back). */
  CHECK_OK(hotmod_runtime_register_host_function(rt, "greeting", greeting_fails, &c, greeting_free));
  CHECK(b.frees == 1);
  CHECK_CALL_STR(call_str(rt, "text", "greet", "Cy", NULL), "Hello, Cy!");
  CHECK(c.calls == 1);

  /* free_user_data is optional; other names are independent. */
  CHECK_OK(hotmod_runtime_register_host_function(rt, "unused", greeting_copy, &a, NULL));
  CHECK_STATUS(hotmod_runtime_register_host_function(rt, "", greeting_copy, &a, NULL),
               HOTMOD_STATUS_INVALID_ARGUMENT);

  hotmod_runtime_free(rt);
  CHECK(a.frees == 1 && b.frees == 1);
  CHECK(c.frees == 1); /* the current one is freed with the runtime, once */
}

/* ------------------------------------------------------------------------ */
/* events                                                                    */

static void test_events(void) {
  static event_log a, b, c; /* static: large */
  event_log_init(&a);
  event_log_init(&b);
  event_log_init(&c);
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  CHECK_OK(hotmod_runtime_set_event_callback(rt, on_event, &a, event_log_free));

  const char *v1 = PLUGIN("libchecksum.so");
  CHECK_OK(hotmod_runtime_load(rt, v1, NULL, NULL));
  int lo = find_event(&a, 0, HOTMOD_EVENT_KIND_LOADED, "checksum", "1.0.0");
  int va = find_event(&a, 0, HOTMOD_EVENT_KIND_VALIDATED, "checksum", "1.0.0");
  int ac = find_event(&a, 0, HOTMOD_EVENT_KIND_ACTIVATED, "checksum", "1.0.0");
  if (!CHECK(lo >= 0 && va > lo && ac > va)) dump_events(&a, 0);
  if (ac >= 0) {
    CHECK_STR_EQ(a.path[ac], v1);
    CHECK(a.codes[ac] == 0);
  }

  /* A failed load is an event too, with its status and the file. */
  int before = event_count(&a);
  const char *missing = NOT_PLUGIN("does-not-exist.so");
  CHECK_STATUS(hotmod_runtime_load(rt, missing, NULL, NULL), HOTMOD_STATUS_FILE_MISSING);
  int uf = find_event(&a, before, HOTMOD_EVENT_KIND_UPGRADE_FAILED, NULL, NULL);
  if (CHECK(uf >= 0)) {
    CHECK(a.codes[uf] == HOTMOD_STATUS_FILE_MISSING);
    CHECK_STR_EQ(a.path[uf], missing);
  }

  /* An upgrade: the new version comes up, the old one drains and goes. */
  before = event_count(&a);
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", PLUGIN("libchecksum-v2.so"), NULL, 0, NULL));
  ac = find_event(&a, before, HOTMOD_EVENT_KIND_ACTIVATED, "checksum", "2.0.0");
  int dr = find_event(&a, before, HOTMOD_EVENT_KIND_DRAINING, "checksum", "1.0.0");
  int un = find_event(&a, before, HOTMOD_EVENT_KIND_UNLOADED, "checksum", "1.0.0");
  if (!CHECK(find_event(&a, before, HOTMOD_EVENT_KIND_LOADED, "checksum", "2.0.0") >= before && ac > before &&
             dr > ac && un > dr)) {
    dump_events(&a, 0);
  }

  /* Plugin log lines arrive as LOG events with their level. */
  hotmod_load_options *o = NULL;
  CHECK_OK(hotmod_load_options_new(&o));
  CHECK_OK(hotmod_load_options_set_config(o, (const uint8_t *)"hi", 2));
  before = event_count(&a);
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libtext.so"), o, NULL));
  hotmod_load_options_free(o);
  int lg = find_event(&a, before, HOTMOD_EVENT_KIND_LOG, "text", NULL);
  if (CHECK(lg >= 0)) {
    CHECK(a.codes[lg] == HOTMOD_LOG_INFO);
    CHECK_CONTAINS(a.message[lg], "text: config hi");
  }

  /* A plugin that is not safe to unload stays mapped, and says so. */
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libtls.so"), NULL, NULL));
  uint8_t dst[8];
  size_t n = 0;
  CHECK_OK(hotmod_runtime_call_into(rt, "tls", "touch", (const uint8_t *)"x", 1, dst, 8, &n));
  before = event_count(&a);
  CHECK_OK(hotmod_runtime_upgrade(rt, "tls", PLUGIN("libtls.so"), NULL, 0, NULL));
  if (!CHECK(find_event(&a, before, HOTMOD_EVENT_KIND_KEPT_MAPPED, "tls", "1.0.0") >= 0)) dump_events(&a, 0);
  CHECK_OK(hotmod_runtime_call_into(rt, "tls", "touch", (const uint8_t *)"y", 1, dst, 8, &n));
  /* The new version is a separate copy of the library, with its own
   * thread-locals: a fresh 64-byte scratch plus this call's byte. */
  if (CHECK(n == 8)) CHECK_U64_EQ(get_u64le(dst), 65);

  /* Replacing the callback frees the old user_data once; the old callback
   * is no longer called. */
  CHECK(a.frees == 0);
  CHECK_OK(hotmod_runtime_set_event_callback(rt, on_event, &b, event_log_free));
  CHECK(a.frees == 1);
  int a_n = event_count(&a);
  CHECK_OK(hotmod_runtime_unload(rt, "text", 0));
  CHECK(event_count(&a) == a_n);
  if (!CHECK(find_event(&b, 0, HOTMOD_EVENT_KIND_DRAINING, "text", "1.0.0") >= 0 &&
             find_event(&b, 0, HOTMOD_EVENT_KIND_UNLOADED, "text", "1.0.0") >= 0)) {
    dump_events(&b, 0);
  }

  /* Clearing it (NULL) frees that one too. */
  CHECK_OK(hotmod_runtime_set_event_callback(rt, NULL, NULL, NULL));
  CHECK(b.frees == 1);
  int b_n = event_count(&b);
  CHECK_OK(hotmod_runtime_unload(rt, "tls", 0));
  CHECK(event_count(&b) == b_n);

  /* The runtime frees the last one, once, after its final events. */
  CHECK_OK(hotmod_runtime_set_event_callback(rt, on_event, &c, event_log_free));
  hotmod_runtime_free(rt);
  CHECK(find_event(&c, 0, HOTMOD_EVENT_KIND_UNLOADED, "checksum", "2.0.0") >= 0);
  CHECK(a.frees == 1 && b.frees == 1 && c.frees == 1);
}

/* ------------------------------------------------------------------------ */
/* statistics                                                                */

static void test_stats(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, NULL)));
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libprobe.so"), NULL, NULL)));
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("liblifecycle.so"), NULL, NULL)));

  hotmod_method *crc = NULL, *crc2 = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc));
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc2));
  uint8_t dst[8];
  size_t n = 0;
  hotmod_status st;
  for (int i = 0; i < 10; i++) CHECK_U64_EQ(crc_by_handle(crc, &st), CRC32_123456789);
  for (int i = 0; i < 5; i++) {
    hotmod_buffer *b = NULL;
    CHECK_OK(hotmod_runtime_call(rt, "checksum", "crc32", (const uint8_t *)DIGITS, 9, &b));
    hotmod_buffer_free(b);
  }
  for (int i = 0; i < 3; i++) CHECK_OK(hotmod_runtime_call_into(rt, "checksum", "crc32", NULL, 0, dst, 8, &n));
  for (int i = 0; i < 3; i++) CHECK_STATUS(hotmod_runtime_call(rt, "probe", "fail", NULL, 0, NULL), HOTMOD_STATUS_NULL_ARGUMENT);
  for (int i = 0; i < 3; i++) {
    hotmod_buffer *b = NULL;
    CHECK_STATUS(hotmod_runtime_call(rt, "probe", "fail", NULL, 0, &b), HOTMOD_STATUS_PLUGIN_ERROR);
  }
  for (int i = 0; i < 2; i++) {
    hotmod_buffer *b = NULL;
    CHECK_STATUS(hotmod_runtime_call(rt, "lifecycle", "panic", NULL, 0, &b), HOTMOD_STATUS_PLUGIN_PANICKED);
    CHECK_CONTAINS(hotmod_last_error_message(), "method panicked on purpose");
  }

  hotmod_stats *s = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_stats(rt, &s)));
  size_t count = 0;
  CHECK_OK(hotmod_stats_count(s, &count));
  size_t methods = 0;
  for (size_t i = 0; i < 3; i++) {
    hotmod_module *x = NULL;
    size_t k = 0;
    CHECK_OK(hotmod_runtime_module_at(rt, i, &x));
    CHECK_OK(hotmod_module_method_count(x, &k));
    methods += k;
    hotmod_module_free(x);
  }
  CHECK_U64_EQ(count, methods); /* every method of every module */
  hotmod_method_stats m;
  if (CHECK(find_stats(s, "checksum", "crc32", &m))) {
    CHECK_U64_EQ(m.calls, 18);
    CHECK_U64_EQ(m.errors, 0);
    CHECK_U64_EQ(m.panics, 0);
    CHECK_U64_EQ(m.handles, 2);
    CHECK_STR_EQ(m.version, "1.0.0");
    CHECK(m.latency_samples <= m.calls);
    CHECK(m.latency_p50_ns <= m.latency_p99_ns);
  }
  if (CHECK(find_stats(s, "probe", "fail", &m))) {
    CHECK_U64_EQ(m.calls, 3); /* the three NULL-out calls never reached the plugin */
    CHECK_U64_EQ(m.errors, 3);
    CHECK_U64_EQ(m.handles, 0);
  }
  if (CHECK(find_stats(s, "lifecycle", "panic", &m))) {
    CHECK_U64_EQ(m.calls, 2);
    CHECK_U64_EQ(m.panics, 2);
    CHECK_U64_EQ(m.errors, 2);
  }
  if (CHECK(find_stats(s, "checksum", "adler32", &m))) CHECK_U64_EQ(m.calls, 0);
  hotmod_method_stats untouched;
  memset(&untouched, 0xAB, sizeof untouched);
  m = untouched;
  CHECK_STATUS(hotmod_stats_get(s, count, &m), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK(memcmp(&m, &untouched, sizeof m) == 0);

  /* A snapshot does not move; handles freed show in the next one. */
  CHECK_U64_EQ(crc_by_handle(crc, &st), CRC32_123456789);
  hotmod_method_free(crc2);
  if (CHECK(find_stats(s, "checksum", "crc32", &m))) CHECK_U64_EQ(m.calls, 18);
  hotmod_stats *s2 = NULL;
  CHECK_OK(hotmod_runtime_stats(rt, &s2));
  if (CHECK(find_stats(s2, "checksum", "crc32", &m))) {
    CHECK_U64_EQ(m.calls, 19);
    CHECK_U64_EQ(m.handles, 1);
  }
  hotmod_stats_free(s2);

  /* Counters survive an upgrade (they are per module, over every version). */
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", PLUGIN("libchecksum-v2.so"), NULL, 0, NULL));
  CHECK_U64_EQ(crc_by_handle(crc, &st), CRC32_123456789);
  CHECK_OK(hotmod_runtime_stats(rt, &s2));
  if (CHECK(find_stats(s2, "checksum", "crc32", &m))) {
    CHECK_U64_EQ(m.calls, 20);
    CHECK_STR_EQ(m.version, "2.0.0");
  }
  hotmod_stats_free(s2);

  /* Prometheus text. */
  hotmod_buffer *pb = NULL;
  CHECK_OK(hotmod_runtime_stats_prometheus(rt, &pb));
  char *text = buf_strdup(pb);
  hotmod_buffer_free(pb);
  CHECK_CONTAINS(text, "# TYPE hotmod_method_calls_total counter\n");
  CHECK_CONTAINS(text, "hotmod_method_calls_total{module=\"checksum\",method=\"crc32\"} 20\n");
  CHECK_CONTAINS(text, "hotmod_method_errors_total{module=\"probe\",method=\"fail\"} 3\n");
  CHECK_CONTAINS(text, "hotmod_method_panics_total{module=\"lifecycle\",method=\"panic\"} 2\n");
  CHECK_CONTAINS(text, "hotmod_method_handles{module=\"checksum\",method=\"crc32\"} 1\n");
  CHECK_CONTAINS(text, "# TYPE hotmod_method_latency_seconds histogram\n");
  CHECK_CONTAINS(text, "hotmod_module_info{module=\"checksum\",version=\"2.0.0\"} 1\n");
  free(text);

  hotmod_stats_free(s);
  hotmod_method_free(crc);
  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* unload                                                                    */

static void test_unload(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, NULL)));
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libtext.so"), NULL, NULL)));
  hotmod_method *upper = NULL, *hex = NULL;
  hotmod_module *tm = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "text", "upper", &upper));
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "hex", &hex));
  CHECK_OK(hotmod_runtime_module(rt, "text", &tm));
  CHECK_CALL_STR(method_str(upper, "abc", NULL), "ABC");

  /* A buffer of plugin memory outlives the unload of its module. */
  hotmod_buffer *held = NULL;
  CHECK_OK(hotmod_method_call(hex, (const uint8_t *)"\xde\xad", 2, &held));

  CHECK_OK(hotmod_runtime_unload(rt, "text", 0));
  hotmod_status st = 0;
  char *r = method_str(upper, "abc", &st);
  CHECK(r == NULL);
  CHECK_STATUS(st, HOTMOD_STATUS_STALE_HANDLE);
  CHECK_CONTAINS(hotmod_last_error_message(), "text");
  uint8_t dst[16];
  size_t n = 999;
  CHECK_STATUS(hotmod_method_call_into(upper, (const uint8_t *)"a", 1, dst, sizeof dst, &n),
               HOTMOD_STATUS_STALE_HANDLE);
  CHECK(n == 999);
  hotmod_method *mh = NULL;
  CHECK_STATUS(hotmod_module_resolve(tm, "upper", &mh), HOTMOD_STATUS_STALE_HANDLE);
  const char *s = NULL;
  CHECK_OK(hotmod_module_name(tm, &s)); /* introspection of the handle still works */
  CHECK_STR_EQ(s, "text");
  hotmod_buffer *none = NULL;
  CHECK_STATUS(hotmod_runtime_call(rt, "text", "upper", NULL, 0, &none), HOTMOD_STATUS_MODULE_NOT_FOUND);
  CHECK(none == NULL);
  CHECK_STATUS(hotmod_runtime_unload(rt, "text", 0), HOTMOD_STATUS_MODULE_NOT_FOUND);
  CHECK_STATUS(hotmod_runtime_resolve(rt, "text", "upper", &mh), HOTMOD_STATUS_MODULE_NOT_FOUND);
  CHECK(mh == NULL);
  size_t count = 0;
  CHECK_OK(hotmod_runtime_module_count(rt, &count));
  CHECK_U64_EQ(count, 1);

  /* Loading it again does not revive old handles. */
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libtext.so"), NULL, NULL));
  CHECK_STATUS(hotmod_method_call_into(upper, (const uint8_t *)"a", 1, dst, sizeof dst, &n),
               HOTMOD_STATUS_STALE_HANDLE);
  CHECK_CALL_STR(call_str(rt, "text", "upper", "again", NULL), "AGAIN");

  CHECK_OK(hotmod_runtime_unload(rt, "checksum", 0));
  CHECK_STATUS(hotmod_method_call(hex, NULL, 0, &none), HOTMOD_STATUS_STALE_HANDLE);
  CHECK(none == NULL);
  char *h = buf_strdup(held);
  CHECK_STR_EQ(h, "dead"); /* still valid after the unload */
  free(h);
  hotmod_buffer_free(held);

  hotmod_method_free(upper);
  hotmod_method_free(hex);
  hotmod_module_free(tm);
  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* upgrade                                                                   */

typedef struct destroy_count {
  int destroyed;
  int violations;
} destroy_count;

static int32_t on_destroyed(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  (void)in;
  (void)out;
  CHECK(len == 8);
  ((destroy_count *)ud)->destroyed++;
  return 0;
}

static int32_t on_violation(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  (void)in;
  (void)len;
  (void)out;
  ((destroy_count *)ud)->violations++;
  return 0;
}

static void test_upgrade(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  const char *v1 = PLUGIN("libchecksum.so"), *v2 = PLUGIN("libchecksum-v2.so");
  hotmod_module *m1 = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, v1, NULL, &m1)));
  hotmod_method *crc = NULL, *ver = NULL, *hex = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc));
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "version", &ver));
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "hex", &hex));
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "1.0.0");
  hotmod_status st;
  for (int i = 0; i < 5; i++) crc_by_handle(crc, &st);
  uint64_t calls_before = call_u64(rt, "checksum", "calls", NULL, 0);
  CHECK_U64_EQ(calls_before, 7); /* 5 crc32 + 1 version + itself */

  /* v1's static memory, held across the upgrade. */
  hotmod_buffer *held = NULL;
  CHECK_OK(hotmod_method_call(ver, NULL, 0, &held));

  hotmod_module *m2 = NULL;
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", v2, NULL, 0, &m2));
  CHECK(m2 != NULL && module_is(m2, "checksum", "2.0.0"));
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0"); /* the handle follows */
  CHECK_U64_EQ(crc_by_handle(crc, &st), CRC32_123456789);
  /* State carried over: + held version call, version, crc32 and this call. */
  CHECK_U64_EQ(call_u64(rt, "checksum", "calls", NULL, 0), calls_before + 4);
  CHECK(module_is(m1, "checksum", "1.0.0")); /* the old handle describes v1 */
  const char *s1 = NULL, *s2 = NULL;
  CHECK_OK(hotmod_module_sha256(m1, &s1));
  CHECK_OK(hotmod_module_sha256(m2, &s2));
  CHECK(s1 && s2 && strcmp(s1, s2) != 0);
  CHECK_OK(hotmod_module_path(m2, &s2));
  CHECK_STR_EQ(s2, v2);
  hotmod_module *now = NULL;
  CHECK_OK(hotmod_runtime_module(rt, "checksum", &now));
  CHECK(module_is(now, "checksum", "2.0.0"));
  hotmod_module_free(now);
  char *h = buf_strdup(held);
  CHECK_STR_EQ(h, "1.0.0"); /* v1 stayed alive for its buffer */
  free(h);
  hotmod_buffer_free(held);

  /* And back. */
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", v1, NULL, 0, NULL));
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "1.0.0");

  /* Refused upgrades leave the running version serving. */
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "checksum", PLUGIN("libtext.so"), NULL, 0, NULL),
               HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), PLUGIN("libtext.so"));
  CHECK_CONTAINS(hotmod_last_error_message(), "'text'");
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "checksum", NOT_PLUGIN("does-not-exist.so"), NULL, 0, NULL),
               HOTMOD_STATUS_FILE_MISSING);
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "nope", v2, NULL, 0, NULL), HOTMOD_STATUS_MODULE_NOT_FOUND);
  hotmod_load_options *o = NULL;
  CHECK_OK(hotmod_load_options_new(&o));
  CHECK_OK(hotmod_load_options_set_sha256(o, "0000000000000000000000000000000000000000000000000000000000000000"));
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "checksum", v2, o, 0, NULL), HOTMOD_STATUS_HASH_MISMATCH);
  CHECK_CONTAINS(hotmod_last_error_message(), v2);
  hotmod_load_options_free(o);
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "1.0.0");

  /* An upgrade that changes a held method's signature and removes another
   * is refused unless forced. */
  const char *breaking = PLUGIN("libchecksum-breaking.so");
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "checksum", breaking, NULL, 0, NULL), HOTMOD_STATUS_SIGNATURE_MISMATCH);
  CHECK_CONTAINS(hotmod_last_error_message(), breaking);
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "1.0.0");
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", breaking, NULL, HOTMOD_UPGRADE_FORCE, NULL));
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "3.0.0");
  crc_by_handle(crc, &st);
  CHECK_STATUS(st, HOTMOD_STATUS_SIGNATURE_CHANGED);
  CHECK_CONTAINS(hotmod_last_error_message(), "crc32");
  hotmod_buffer *b = NULL;
  CHECK_STATUS(hotmod_method_call(hex, NULL, 0, &b), HOTMOD_STATUS_STALE_HANDLE);
  CHECK_CONTAINS(hotmod_last_error_message(), "hex");
  /* A handle resolved again reaches the new contract (crc32 is now
   * "bytes -> u64le", the input's length). */
  hotmod_method *crc_u64 = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc_u64));
  uint8_t dst[8];
  size_t n = 0;
  CHECK_OK(hotmod_method_call_into(crc_u64, (const uint8_t *)DIGITS, 9, dst, sizeof dst, &n));
  CHECK_U64_EQ(n, 8);
  CHECK_U64_EQ(get_u64le(dst), 9);
  hotmod_method_free(crc_u64);
  hotmod_method_free(crc);
  hotmod_method_free(hex);
  hotmod_method_free(ver);
  hotmod_module_free(m1);
  hotmod_module_free(m2);

  /* Lifecycle hooks across upgrades: state import, failures, destroy. */
  static destroy_count dc;
  CHECK_OK(hotmod_runtime_register_host_function(rt, "destroyed", on_destroyed, &dc, NULL));
  CHECK_OK(hotmod_runtime_register_host_function(rt, "violation", on_violation, &dc, NULL));
  static atomic_uint_fast64_t next_id;
  CHECK_OK(hotmod_runtime_register_host_function(rt, "new_id", lifecycle_new_id, &next_id, NULL));
  const char *lc = PLUGIN("liblifecycle.so");
  CHECK_OK(hotmod_runtime_load(rt, lc, NULL, NULL));
  CHECK_U64_EQ(call_u64(rt, "lifecycle", "generation", NULL, 0), 1);
  uint64_t id1 = call_u64(rt, "lifecycle", "work", "x", 1);

  o = util_opts_config("fail-import");
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "lifecycle", lc, o, 0, NULL), HOTMOD_STATUS_INIT_FAILED);
  CHECK_CONTAINS(hotmod_last_error_message(), "state import refused by config");
  CHECK_CONTAINS(hotmod_last_error_message(), lc);
  hotmod_load_options_free(o);
  CHECK(dc.destroyed == 1); /* the half-started new instance was destroyed */
  o = util_opts_config("fail-init");
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "lifecycle", lc, o, 0, NULL), HOTMOD_STATUS_INIT_FAILED);
  CHECK_CONTAINS(hotmod_last_error_message(), "init refused by config");
  hotmod_load_options_free(o);
  o = util_opts_config("panic-init");
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "lifecycle", lc, o, 0, NULL), HOTMOD_STATUS_INIT_FAILED);
  CHECK_CONTAINS(hotmod_last_error_message(), "init panicked on purpose");
  hotmod_load_options_free(o);
  CHECK(dc.destroyed == 1); /* no instance existed to destroy */
  CHECK_U64_EQ(call_u64(rt, "lifecycle", "work", "x", 1), id1); /* v1 still serves */
  CHECK_U64_EQ(call_u64(rt, "lifecycle", "generation", NULL, 0), 1);

  CHECK_OK(hotmod_runtime_upgrade(rt, "lifecycle", lc, NULL, 0, NULL));
  CHECK_U64_EQ(call_u64(rt, "lifecycle", "generation", NULL, 0), 2);
  CHECK(call_u64(rt, "lifecycle", "work", "x", 1) != id1);
  CHECK(dc.destroyed == 2 && dc.violations == 0);
  CHECK_OK(hotmod_runtime_unload(rt, "lifecycle", 0));
  CHECK(dc.destroyed == 3 && dc.violations == 0);

  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* dependencies                                                              */

static void test_dependencies(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  const char *dep = PLUGIN("libdependent.so");
  const char *v1 = PLUGIN("libchecksum.so"), *v2 = PLUGIN("libchecksum-v2.so");

  CHECK_STATUS(hotmod_runtime_load(rt, dep, NULL, NULL), HOTMOD_STATUS_DEPENDENCY_UNSATISFIED);
  CHECK_CONTAINS(hotmod_last_error_message(), dep);
  CHECK_CONTAINS(hotmod_last_error_message(), "'checksum' ^1");
  CHECK_OK(hotmod_runtime_load(rt, v2, NULL, NULL));
  CHECK_STATUS(hotmod_runtime_load(rt, dep, NULL, NULL), HOTMOD_STATUS_DEPENDENCY_UNSATISFIED);
  CHECK_CONTAINS(hotmod_last_error_message(), "2.0.0");
  CHECK_OK(hotmod_runtime_unload(rt, "checksum", 0));

  CHECK_OK(hotmod_runtime_load(rt, v1, NULL, NULL));
  hotmod_module *dm = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, dep, NULL, &dm)));
  size_t n = 0;
  CHECK_OK(hotmod_module_dependency_count(dm, &n));
  CHECK_U64_EQ(n, 1);
  const char *name = NULL, *req = NULL;
  CHECK_OK(hotmod_module_dependency_info(dm, 0, &name, &req));
  CHECK_STR_EQ(name, "checksum");
  CHECK_STR_EQ(req, "^1");

  hotmod_method *via = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "dependent", "crc32_via_dep", &via));
  hotmod_status st;
  CHECK_U64_EQ(crc_by_handle(via, &st), CRC32_123456789);
  CHECK_CALL_STR(call_str(rt, "dependent", "checksum_version", NULL, NULL), "1.0.0");
  uint8_t code[4];
  CHECK_OK(hotmod_runtime_call_into(rt, "dependent", "undeclared", NULL, 0, code, 4, &n));
  CHECK_U64_EQ(get_u32le(code), HOTMOD_STATUS_INVALID_ARGUMENT); /* not among its dependencies */

  /* A module others need cannot go, nor move out of their range. */
  CHECK_STATUS(hotmod_runtime_unload(rt, "checksum", 0), HOTMOD_STATUS_MODULE_IN_USE);
  CHECK_CONTAINS(hotmod_last_error_message(), "dependent");
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "checksum", v2, NULL, 0, NULL), HOTMOD_STATUS_VERSION_CONFLICT);
  CHECK_CONTAINS(hotmod_last_error_message(), "dependent");
  CHECK_CONTAINS(hotmod_last_error_message(), "^1");
  CHECK_CONTAINS(hotmod_last_error_message(), v2);
  CHECK_CALL_STR(call_str(rt, "dependent", "checksum_version", NULL, NULL), "1.0.0");
  /* Within the range it may be upgraded; the dependent follows. */
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", v1, NULL, 0, NULL));
  CHECK_U64_EQ(crc_by_handle(via, &st), CRC32_123456789);
  CHECK_OK(hotmod_runtime_module_count(rt, &n));
  CHECK_U64_EQ(n, 2);

  /* Forwarded plugin memory outlives a cascading unload. */
  hotmod_buffer *held = NULL;
  CHECK_OK(hotmod_runtime_call(rt, "dependent", "checksum_version", NULL, 0, &held));
  CHECK_OK(hotmod_runtime_unload(rt, "checksum", HOTMOD_UNLOAD_CASCADE));
  CHECK_OK(hotmod_runtime_module_count(rt, &n));
  CHECK_U64_EQ(n, 0);
  crc_by_handle(via, &st);
  CHECK_STATUS(st, HOTMOD_STATUS_STALE_HANDLE);
  char *h = buf_strdup(held);
  CHECK_STR_EQ(h, "1.0.0");
  free(h);
  hotmod_buffer_free(held);

  /* Dependents first, then what they need: no cascade needed. */
  CHECK_OK(hotmod_runtime_load(rt, v1, NULL, NULL));
  CHECK_OK(hotmod_runtime_load(rt, dep, NULL, NULL));
  CHECK_OK(hotmod_runtime_unload(rt, "dependent", 0));
  CHECK_OK(hotmod_runtime_unload(rt, "checksum", 0));

  /* The runtime unloads dependents first when freed. */
  CHECK_OK(hotmod_runtime_load(rt, v1, NULL, NULL));
  CHECK_OK(hotmod_runtime_load(rt, dep, NULL, NULL));
  hotmod_method_free(via);
  hotmod_module_free(dm);
  hotmod_runtime_free(rt);
}

/* ------------------------------------------------------------------------ */
/* what survives hotmod_runtime_free                                         */

static void test_handles_outlive_runtime(void) {
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  hotmod_module *m = NULL;
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, &m));
  hotmod_method *crc = NULL, *hex = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc));
  CHECK_OK(hotmod_module_resolve(m, "hex", &hex));
  hotmod_buffer *held = NULL;
  CHECK_OK(hotmod_method_call(hex, (const uint8_t *)"\x42", 1, &held));
  hotmod_stats *s = NULL;
  CHECK_OK(hotmod_runtime_stats(rt, &s));
  hotmod_runtime_free(rt);

  hotmod_status st;
  crc_by_handle(crc, &st);
  CHECK_STATUS(st, HOTMOD_STATUS_STALE_HANDLE);
  hotmod_method *mh = NULL;
  CHECK_STATUS(hotmod_module_resolve(m, "crc32", &mh), HOTMOD_STATUS_STALE_HANDLE);
  CHECK(module_is(m, "checksum", "1.0.0"));
  char *h = buf_strdup(held);
  CHECK_STR_EQ(h, "42");
  free(h);
  hotmod_method_stats ms;
  CHECK_OK(hotmod_stats_get(s, 0, &ms));
  CHECK_STR_EQ(ms.module, "checksum");
  hotmod_stats_free(s);
  hotmod_buffer_free(held);
  hotmod_method_free(crc);
  hotmod_method_free(hex);
  hotmod_module_free(m);
}

int main(void) {
  util_init();
  test_version_and_status();
  test_load_and_introspect();
  test_calls();
  test_bad_outputs();
  test_in_flight();
  test_host_functions();
  test_events();
  test_stats();
  test_unload();
  test_upgrade();
  test_dependencies();
  test_handles_outlive_runtime();
  return check_summary();
}
