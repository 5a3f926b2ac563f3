/*
 * options_test.c — the 1.1 additions of the C API against real fixtures:
 * load options (largest file, preflight in the hotmod-worker helper),
 * runtime options (largest output, versions kept mapped), the kept-mapped
 * count, and a module's ELF facts.
 *
 * The preflight helper is the built hotmod-worker, found beside the library
 * (HOTMOD_LIB_DIR); the constructor faults are in $HOTMOD_PLUGIN_DIR/faults.
 */
#include <stddef.h>
#include <sys/stat.h>

#include "util.h"

#define LIB(file) util_path("HOTMOD_LIB_DIR", (file))

/* ---- load options: the largest file accepted ---------------------------- */

static void test_max_file_size(void) {
  const char *path = PLUGIN("libchecksum.so");
  struct stat st;
  REQUIRE(stat(path, &st) == 0 && st.st_size > 1);
  hotmod_runtime *rt = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_new(&rt)));
  hotmod_load_options *o = NULL;
  REQUIRE(CHECK_OK(hotmod_load_options_new(&o)));

  /* One byte under the file's size: refused before it is read. */
  CHECK_OK(hotmod_load_options_set_max_file_size(o, (uint64_t)st.st_size - 1));
  hotmod_module *m = NULL;
  CHECK_STATUS(hotmod_runtime_load(rt, path, o, &m), HOTMOD_STATUS_FILE_TOO_LARGE);
  CHECK_CONTAINS(hotmod_last_error_message(), "libchecksum.so");
  CHECK(m == NULL);
  size_t n = 99;
  CHECK_OK(hotmod_runtime_module_count(rt, &n));
  CHECK(n == 0);

  /* Exactly its size: accepted. */
  CHECK_OK(hotmod_load_options_set_max_file_size(o, (uint64_t)st.st_size));
  CHECK_OK(hotmod_runtime_load(rt, path, o, NULL));
  hotmod_status s;
  CHECK_CALL_STR(call_str(rt, "checksum", "version", NULL, &s), "1.0.0");

  /* Upgrades read the same option. */
  CHECK_OK(hotmod_load_options_set_max_file_size(o, 16));
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "checksum", PLUGIN("libchecksum-v2.so"), o, 0, NULL),
               HOTMOD_STATUS_FILE_TOO_LARGE);
  CHECK_CONTAINS(hotmod_last_error_message(), "libchecksum-v2.so");
  CHECK_CALL_STR(call_str(rt, "checksum", "version", NULL, &s), "1.0.0"); /* the old one keeps serving */

  hotmod_load_options_free(o);
  hotmod_runtime_free(rt);
}

/* ---- load options: preflight ---------------------------------------------- */

static hotmod_load_options *preflight_opts(int32_t mode, const char *helper, uint32_t timeout_ms) {
  hotmod_load_options *o = NULL;
  CHECK_OK(hotmod_load_options_new(&o));
  CHECK_OK(hotmod_load_options_set_preflight(o, mode));
  if (helper) CHECK_OK(hotmod_load_options_set_preflight_helper(o, helper));
  if (timeout_ms) CHECK_OK(hotmod_load_options_set_preflight_timeout_ms(o, timeout_ms));
  return o;
}

static void test_preflight(void) {
  const char *worker = LIB("hotmod-worker");
  REQUIRE(access(worker, X_OK) == 0);
  hotmod_runtime *rt = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_new(&rt)));

  /* A constructor that crashes kills the child, not this process. */
  hotmod_load_options *on = preflight_opts(HOTMOD_PREFLIGHT_ON, worker, 0);
  hotmod_module *m = NULL;
  CHECK_STATUS(hotmod_runtime_load(rt, PLUGIN("faults/libctor_segv.so"), on, &m), HOTMOD_STATUS_PREFLIGHT_FAILED);
  CHECK_CONTAINS(hotmod_last_error_message(), "libctor_segv.so");
  CHECK_CONTAINS(hotmod_last_error_message(), "signal 11");
  CHECK_CONTAINS(hotmod_last_error_message(), "hotmod-worker");
  CHECK(m == NULL);
  /* So does one that exits. */
  CHECK_STATUS(hotmod_runtime_load(rt, PLUGIN("faults/libctor_exit.so"), on, NULL), HOTMOD_STATUS_PREFLIGHT_FAILED);
  CHECK_CONTAINS(hotmod_last_error_message(), "exited with status 3");

  /* A good plugin passes the preflight and loads. */
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), on, &m));
  CHECK(m != NULL);
  hotmod_module_free(m);
  hotmod_load_options_free(on);

  /* A constructor that hangs is killed after the timeout set. */
  hotmod_load_options *quick = preflight_opts(HOTMOD_PREFLIGHT_ON, worker, 300);
  CHECK_STATUS(hotmod_runtime_load(rt, PLUGIN("faults/libctor_hang.so"), quick, NULL), HOTMOD_STATUS_PREFLIGHT_FAILED);
  CHECK_CONTAINS(hotmod_last_error_message(), "did not finish within");
  hotmod_load_options_free(quick);

  /* ON with a helper that does not exist refuses the load, naming it. */
  hotmod_load_options *missing = preflight_opts(HOTMOD_PREFLIGHT_ON, "/nonexistent/hotmod-worker", 0);
  CHECK_STATUS(hotmod_runtime_load(rt, PLUGIN("libprobe.so"), missing, NULL), HOTMOD_STATUS_WORKER_UNAVAILABLE);
  CHECK_CONTAINS(hotmod_last_error_message(), "/nonexistent/hotmod-worker");
  /* OFF (the default) does not start any helper: the same options load. */
  CHECK_OK(hotmod_load_options_set_preflight(missing, HOTMOD_PREFLIGHT_OFF));
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libprobe.so"), missing, NULL));
  hotmod_load_options_free(missing);

  /* Values the setters refuse, naming what was expected; nothing changes. */
  hotmod_load_options *o = NULL;
  REQUIRE(CHECK_OK(hotmod_load_options_new(&o)));
  CHECK_STATUS(hotmod_load_options_set_preflight(o, 3), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "HOTMOD_PREFLIGHT_ON 2), found 3");
  CHECK_STATUS(hotmod_load_options_set_preflight(o, -1), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(hotmod_load_options_set_preflight_timeout_ms(o, 0), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "at least 1 ms, found 0");
  CHECK_STATUS(hotmod_load_options_set_preflight_helper(o, ""), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "expected the path of an executable");
  CHECK_OK(hotmod_load_options_set_preflight(o, HOTMOD_PREFLIGHT_IF_AVAILABLE));
  CHECK_OK(hotmod_load_options_set_preflight_helper(o, worker));
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libdependent.so"), o, NULL));
  hotmod_load_options_free(o);

  size_t n = 0;
  CHECK_OK(hotmod_runtime_module_count(rt, &n));
  CHECK(n == 3); /* checksum, probe, dependent */
  hotmod_runtime_free(rt);
}

/* ---- runtime options ------------------------------------------------------ */

static void test_max_output_size(void) {
  enum { BIG = 4096 };
  static uint8_t in[BIG];
  for (size_t i = 0; i < BIG; i++) in[i] = (uint8_t)i;

  hotmod_runtime_options *ro = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_options_new(&ro)));
  CHECK_OK(hotmod_runtime_options_set_max_output_size(ro, 1000));
  hotmod_runtime *capped = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_new_with_options(ro, &capped)));
  /* The runtime keeps a copy: changing or freeing the options now has no effect. */
  CHECK_OK(hotmod_runtime_options_set_max_output_size(ro, (size_t)1 << 30));
  hotmod_runtime_options_free(ro);

  CHECK_OK(hotmod_runtime_load(capped, PLUGIN("libprobe.so"), NULL, NULL));
  hotmod_buffer *b = NULL;
  /* An output under the cap (probe.echo copies its input). */
  CHECK_OK(hotmod_runtime_call(capped, "probe", "echo", in, 900, &b));
  const uint8_t *data = NULL;
  size_t len = 0;
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK(len == 900 && memcmp(data, in, 900) == 0);
  hotmod_buffer_free(b);
  b = NULL;
  /* Over it: refused, naming the method, the size asked and the cap. */
  CHECK_STATUS(hotmod_runtime_call(capped, "probe", "echo", in, BIG, &b), HOTMOD_STATUS_OUTPUT_TOO_LARGE);
  CHECK_CONTAINS(hotmod_last_error_message(), "echo");
  CHECK_CONTAINS(hotmod_last_error_message(), "4096");
  CHECK_CONTAINS(hotmod_last_error_message(), "1000");
  CHECK(b == NULL);
  hotmod_runtime_free(capped);

  /* The same call with the defaults (NULL options) succeeds. */
  hotmod_runtime *plain = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_new_with_options(NULL, &plain)));
  CHECK_OK(hotmod_runtime_load(plain, PLUGIN("libprobe.so"), NULL, NULL));
  CHECK_OK(hotmod_runtime_call(plain, "probe", "echo", in, BIG, &b));
  CHECK_OK(hotmod_buffer_data(b, &data, &len));
  CHECK(len == BIG && memcmp(data, in, BIG) == 0);
  hotmod_buffer_free(b);
  hotmod_runtime_free(plain);
}

static size_t kept(const hotmod_runtime *rt) {
  size_t n = (size_t)-1;
  CHECK_OK(hotmod_runtime_kept_mapped(rt, &n));
  return n;
}

static void test_kept_mapped(void) {
  hotmod_status s;
  /* Default options: every replaced version of a plugin not declared safe
   * to unload is kept, and counted. */
  hotmod_runtime *rt = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_new(&rt)));
  CHECK_U64_EQ(kept(rt), 0);
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libkeep-v1.so"), NULL, NULL));
  CHECK_U64_EQ(kept(rt), 0);
  CHECK_OK(hotmod_runtime_upgrade(rt, "keep", PLUGIN("libkeep-v2.so"), NULL, 0, NULL));
  CHECK_U64_EQ(kept(rt), 1);
  CHECK_CALL_STR(call_str(rt, "keep", "version", NULL, &s), "2.0.0");
  CHECK_OK(hotmod_runtime_upgrade(rt, "keep", PLUGIN("libkeep-v1.so"), NULL, 0, NULL));
  CHECK_U64_EQ(kept(rt), 2);
  CHECK_OK(hotmod_runtime_unload(rt, "keep", 0));
  CHECK_U64_EQ(kept(rt), 3);
  /* A plugin that can be unmapped is not counted. */
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, NULL));
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", PLUGIN("libchecksum-v2.so"), NULL, 0, NULL));
  CHECK_OK(hotmod_runtime_unload(rt, "checksum", 0));
  CHECK_U64_EQ(kept(rt), 3);
  hotmod_runtime_free(rt);

  /* A cap of 2: the third version that would be kept is refused, and the
   * one serving keeps serving. (A drain timeout set alongside is taken.) */
  hotmod_runtime_options *ro = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_options_new(&ro)));
  CHECK_OK(hotmod_runtime_options_set_max_kept_mapped(ro, 2));
  CHECK_OK(hotmod_runtime_options_set_drain_timeout_ms(ro, 5000));
  REQUIRE(CHECK_OK(hotmod_runtime_new_with_options(ro, &rt)));
  hotmod_runtime_options_free(ro);
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libkeep-v1.so"), NULL, NULL));
  CHECK_OK(hotmod_runtime_upgrade(rt, "keep", PLUGIN("libkeep-v2.so"), NULL, 0, NULL));
  CHECK_OK(hotmod_runtime_upgrade(rt, "keep", PLUGIN("libkeep-v1.so"), NULL, 0, NULL));
  CHECK_U64_EQ(kept(rt), 2);
  CHECK_STATUS(hotmod_runtime_upgrade(rt, "keep", PLUGIN("libkeep-v2.so"), NULL, 0, NULL),
               HOTMOD_STATUS_KEPT_MAPPED_LIMIT);
  CHECK_CONTAINS(hotmod_last_error_message(), "libkeep-v2.so");
  CHECK_U64_EQ(kept(rt), 2);
  CHECK_CALL_STR(call_str(rt, "keep", "version", NULL, &s), "1.0.0");
  /* A plugin that can be unmapped is still accepted. */
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, NULL));
  hotmod_runtime_free(rt);
}

/* ---- ELF facts ---------------------------------------------------------- */

/* The ELF facts of `file` loaded alone into a new runtime (then unloaded). */
static hotmod_elf_info elf_of(const char *file) {
  hotmod_elf_info e;
  memset(&e, 0, sizeof e);
  hotmod_runtime *rt = NULL;
  hotmod_module *m = NULL;
  if (!CHECK_OK(hotmod_runtime_new(&rt))) return e;
  if (CHECK_OK(hotmod_runtime_load(rt, PLUGIN(file), NULL, &m))) {
    e.size = sizeof e;
    CHECK_OK(hotmod_module_elf_info(m, &e));
    CHECK_U64_EQ(e.size, sizeof e);
    hotmod_module_free(m);
  }
  hotmod_runtime_free(rt);
  return e;
}

static void test_elf_info(void) {
  hotmod_elf_info e = elf_of("libchecksum.so");
#if defined(__x86_64__)
  CHECK_U64_EQ(e.machine, 62); /* EM_X86_64 */
#elif defined(__aarch64__)
  CHECK_U64_EQ(e.machine, 183); /* EM_AARCH64 */
#else
  CHECK(e.machine != 0);
#endif
  CHECK_U64_EQ(e.elf_class, 8 * sizeof(void *));
  CHECK_U64_EQ(e.flags, 0); /* declares SAFE_TO_UNLOAD, nothing keeps it mapped */

  e = elf_of("libfacts_nodelete.so");
  CHECK((e.flags & HOTMOD_ELF_NODELETE) && (e.flags & HOTMOD_ELF_STAYS_MAPPED));
  CHECK(!(e.flags & (HOTMOD_ELF_STATIC_TLS | HOTMOD_ELF_GNU_UNIQUE | HOTMOD_ELF_GO_RUNTIME)));
  e = elf_of("libfacts_static_tls.so");
  CHECK_U64_EQ(e.flags, HOTMOD_ELF_TLS | HOTMOD_ELF_STATIC_TLS | HOTMOD_ELF_STAYS_MAPPED);
  e = elf_of("libfacts_unique.so");
  CHECK_U64_EQ(e.flags, HOTMOD_ELF_GNU_UNIQUE | HOTMOD_ELF_STAYS_MAPPED);
  e = elf_of("libfacts_go.so");
  CHECK_U64_EQ(e.flags, HOTMOD_ELF_GO_RUNTIME | HOTMOD_ELF_STAYS_MAPPED);
  e = elf_of("libkeep-v1.so"); /* not declared safe to unload; its file is plain */
  CHECK_U64_EQ(e.flags, HOTMOD_ELF_STAYS_MAPPED);
  e = elf_of("libtls.so"); /* dynamic TLS alone does not keep a library mapped */
  CHECK(e.flags & HOTMOD_ELF_TLS);
  CHECK(!(e.flags & HOTMOD_ELF_STATIC_TLS));
  e = elf_of("libctor.so");
  CHECK(e.constructors >= 1);

  /* The size protocol: the struct may grow, and an older caller's smaller
   * one is filled only as far as it reaches. */
  hotmod_runtime *rt = NULL;
  hotmod_module *m = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_new(&rt)));
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libfacts_nodelete.so"), NULL, &m)));
  hotmod_elf_info part;
  memset(&part, 0x5A, sizeof part);
  part.size = offsetof(hotmod_elf_info, flags); /* size, machine and class only */
  CHECK_OK(hotmod_module_elf_info(m, &part));
  CHECK_U64_EQ(part.size, offsetof(hotmod_elf_info, elf_class) + 1);
  CHECK_U64_EQ(part.elf_class, 8 * sizeof(void *));
  CHECK_U64_EQ(part.flags, 0x5A5A5A5Au); /* beyond size: untouched */
  CHECK_U64_EQ(part.constructors, (size_t)0x5A5A5A5A5A5A5A5Aull);

  /* A caller whose struct is larger (a later header): everything known is
   * filled, size says how much, the rest is left alone. */
  struct {
    hotmod_elf_info known;
    uint64_t later;
  } big;
  memset(&big, 0x5A, sizeof big);
  big.known.size = sizeof big;
  CHECK_OK(hotmod_module_elf_info(m, &big.known));
  CHECK_U64_EQ(big.known.size, sizeof(hotmod_elf_info));
  CHECK(big.known.flags & HOTMOD_ELF_NODELETE);
  CHECK_U64_EQ(big.later, 0x5A5A5A5A5A5A5A5Aull);

  /* Too small to hold even the size: refused, nothing written. */
  hotmod_elf_info none;
  memset(&none, 0x5A, sizeof none);
  none.size = sizeof(size_t) - 1;
  hotmod_elf_info before = none;
  CHECK_STATUS(hotmod_module_elf_info(m, &none), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "expected out->size set to sizeof(hotmod_elf_info)");
  CHECK(memcmp(&none, &before, sizeof none) == 0);

  hotmod_module_free(m);
  hotmod_runtime_free(rt);
}

int main(void) {
  util_init();
  test_max_file_size();
  test_preflight();
  test_max_output_size();
  test_kept_mapped();
  test_elf_info();
  return check_summary();
}
