/*
 * load_failures.c — every load error, from a real file: fault-fixture
 * plugins built by make plugins at the root into $HOTMOD_PLUGIN_DIR (sources
 * in tests/fixtures), and files that are not plugins at all made by
 * c-tests/Makefile into $HOTMOD_NOT_PLUGIN_DIR.
 *
 * Each case asserts the documented status, that hotmod_last_error_message()
 * names the file and says what was expected or found, that the `out`
 * handle is left untouched, and that nothing stays loaded.
 *
 * Loads that make the dynamic loader parse a damaged ELF file run in a
 * child process: if the library lets such a file crash the host, the case
 * fails with the signal instead of taking the whole test down.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* The error message of a failed load names the file and contains every
 * needle (a NULL-terminated list). */
static void check_message(const char *msg, const char *path, const char *const *needles) {
  CHECK_CONTAINS(msg, path);
  for (; needles && *needles; needles++) CHECK_CONTAINS(msg, *needles);
}

/* Loads `path` and checks the status, the message (check_message), that
 * `out` is untouched and that nothing more is loaded. */
static void expect_load_fails(const hotmod_runtime *rt, const char *path, const hotmod_load_options *opts,
                              hotmod_status want, const char *const *needles) {
  size_t before = 0, after = 0;
  CHECK_OK(hotmod_runtime_module_count(rt, &before));
  hotmod_module *sentinel = (hotmod_module *)&before, *m = sentinel;
  hotmod_status st = hotmod_runtime_load(rt, path, opts, &m);
  if (!CHECK_STATUS(st, want)) fprintf(stderr, "    (loading %s)\n", path);
  CHECK(m == sentinel);
  check_message(hotmod_last_error_message(), path, needles);
  CHECK_OK(hotmod_runtime_module_count(rt, &after));
  CHECK_U64_EQ(after, before);
  if (st == HOTMOD_STATUS_OK) hotmod_module_free(m == sentinel ? NULL : m);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Like expect_load_fails, in a child process (a crash is a failed check). */
static void expect_load_fails_isolated(const char *path, hotmod_status want, const char *const *needles) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  fflush(NULL);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    hotmod_runtime *rt = NULL;
    hotmod_runtime_new(&rt);
    int32_t st = hotmod_runtime_load(rt, path, NULL, NULL);
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", hotmod_last_error_message());
    hotmod_runtime_free(rt);
    ssize_t w1 = write(fds[1], &st, sizeof st);
    ssize_t w2 = write(fds[1], msg, strlen(msg) + 1);
    _exit(w1 == (ssize_t)sizeof st && w2 > 0 ? 0 : 3);
  }
  close(fds[1]);
  char buf[2048 + sizeof(int32_t)];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) != 0) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    got += (size_t)r;
  }
  buf[got] = '\0';
  close(fds[0]);
  int ws = 0;
  waitpid(pid, &ws, 0);
  if (!CHECK(got > sizeof(int32_t) && WIFEXITED(ws) && WEXITSTATUS(ws) == 0)) {
    if (WIFSIGNALED(ws)) {
      fprintf(stderr, "    loading %s killed the host with signal %d (%s)\n", path, WTERMSIG(ws),
              strsignal(WTERMSIG(ws)));
    } else {
      fprintf(stderr, "    loading %s: the host exited with status %d before reporting\n", path,
              WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    }
    return;
  }
  int32_t st;
  memcpy(&st, buf, sizeof st);
  const char *msg = buf + sizeof st;
  CHECK_STATUS(st, want);
  check_message(msg, path, needles);
}

static int initfail_destroyed;

static int32_t on_initfail_destroyed(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  (void)ud;
  (void)in;
  (void)len;
  (void)out;
  initfail_destroyed++;
  return 0;
}

int main(void) {
  util_init();
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);

  /* Files that are not plugins at all. */
  expect_load_fails(rt, NOT_PLUGIN("does-not-exist.so"), NULL, HOTMOD_STATUS_FILE_MISSING,
                    NEEDLES("expected a file"));
  expect_load_fails(rt, NOT_PLUGIN("not-elf.so"), NULL, HOTMOD_STATUS_NOT_A_LIBRARY,
                    NEEDLES("not a loadable shared library"));
  expect_load_fails(rt, NOT_PLUGIN("empty.so"), NULL, HOTMOD_STATUS_NOT_A_LIBRARY, NEEDLES("0 bytes"));
  expect_load_fails(rt, util_env_dir("HOTMOD_NOT_PLUGIN_DIR"), NULL, HOTMOD_STATUS_NOT_A_LIBRARY,
                    NEEDLES("expected a regular file"));
  expect_load_fails_isolated(NOT_PLUGIN("truncated.so"), HOTMOD_STATUS_NOT_A_LIBRARY, NEEDLES("1000")); /* the size it found */
  expect_load_fails(rt, NOT_PLUGIN("unreadable.so"), NULL, HOTMOD_STATUS_PERMISSION_DENIED,
                    NEEDLES("mode 000", "expected a readable plugin file"));
  expect_load_fails(rt, PLUGIN("libnoentry.so"), NULL, HOTMOD_STATUS_ENTRY_SYMBOL_MISSING,
                    NEEDLES("expected it to export 'hotmod_plugin_v1'", "found no such symbol"));

  /* Plugins with a bad descriptor. */
  expect_load_fails(rt, PLUGIN("libbad_magic.so"), NULL, HOTMOD_STATUS_NOT_A_PLUGIN,
                    NEEDLES("expected magic 0x484D4F44", "found 0xDEADBEEF"));
  expect_load_fails(rt, PLUGIN("libabi_v2.so"), NULL, HOTMOD_STATUS_ABI_UNSUPPORTED, NEEDLES("ABI 2.0", "ABI 1.0"));
  expect_load_fails(rt, PLUGIN("libsmall_size.so"), NULL, HOTMOD_STATUS_INVALID_DESCRIPTOR,
                    NEEDLES("descriptor_size", "found 8"));
  expect_load_fails(rt, PLUGIN("libnull_desc.so"), NULL, HOTMOD_STATUS_INVALID_DESCRIPTOR,
                    NEEDLES("expected a descriptor pointer", "found NULL"));
  expect_load_fails(rt, PLUGIN("libempty_name.so"), NULL, HOTMOD_STATUS_INVALID_DESCRIPTOR,
                    NEEDLES("expected a non-empty", "module name", "found an empty string"));
  expect_load_fails(rt, PLUGIN("libdup_methods.so"), NULL, HOTMOD_STATUS_INVALID_DESCRIPTOR,
                    NEEDLES("expected unique method names", "'crc' declared twice"));
  expect_load_fails(rt, PLUGIN("libnull_fn.so"), NULL, HOTMOD_STATUS_INVALID_DESCRIPTOR,
                    NEEDLES("expected a function pointer for method 'broken'", "found NULL"));
  expect_load_fails(rt, PLUGIN("libbad_semver.so"), NULL, HOTMOD_STATUS_INVALID_DESCRIPTOR,
                    NEEDLES("expected a semver version", "\"one.two\""));
  expect_load_fails(rt, PLUGIN("libbad_dep_range.so"), NULL, HOTMOD_STATUS_INVALID_DESCRIPTOR,
                    NEEDLES("expected a semver range", "\">>1\""));
  expect_load_fails(rt, PLUGIN("libself_dep.so"), NULL, HOTMOD_STATUS_DEPENDENCY_CYCLE,
                    NEEDLES("self_dep -> self_dep"));

  /* Dependencies. */
  expect_load_fails(rt, PLUGIN("liborphan.so"), NULL, HOTMOD_STATUS_DEPENDENCY_UNSATISFIED,
                    NEEDLES("'nowhere' ^1", "found no such module"));
  const char *checksum = PLUGIN("libchecksum.so");
  REQUIRE(CHECK_OK(hotmod_runtime_load(rt, checksum, NULL, NULL)));
  expect_load_fails(rt, PLUGIN("libnewer_dep.so"), NULL, HOTMOD_STATUS_DEPENDENCY_UNSATISFIED,
                    NEEDLES("'checksum' ^3", "found version 1.0.0", checksum));

  /* The same module name twice, from the same file or another. */
  expect_load_fails(rt, checksum, NULL, HOTMOD_STATUS_NAME_CONFLICT, NEEDLES("'checksum' is already loaded"));
  expect_load_fails(rt, PLUGIN("libchecksum-v2.so"), NULL, HOTMOD_STATUS_NAME_CONFLICT,
                    NEEDLES("'checksum' is already loaded", "version 1.0.0", checksum));

  /* Init and activate failures; a half-started instance is destroyed once. */
  CHECK_OK(hotmod_runtime_register_host_function(rt, "initfail_destroyed", on_initfail_destroyed, NULL, NULL));
  const char *initfail = PLUGIN("libinitfail.so");
  expect_load_fails(rt, initfail, NULL, HOTMOD_STATUS_INIT_FAILED,
                    NEEDLES("initfail: expected config \"ok\", found something else"));
  CHECK(initfail_destroyed == 0);
  hotmod_load_options *o = util_opts_config("no-activate");
  expect_load_fails(rt, initfail, o, HOTMOD_STATUS_INIT_FAILED, NEEDLES("initfail: activation refused by config"));
  hotmod_load_options_free(o);
  CHECK(initfail_destroyed == 1);
  o = util_opts_config("ok");
  CHECK_OK(hotmod_runtime_load(rt, initfail, o, NULL));
  hotmod_load_options_free(o);
  CHECK_CALL_STR(call_str(rt, "initfail", "ping", NULL, NULL), "pong");
  CHECK_OK(hotmod_runtime_unload(rt, "initfail", 0));
  CHECK(initfail_destroyed == 2);
  o = util_opts_config("fail-init");
  expect_load_fails(rt, PLUGIN("liblifecycle.so"), o, HOTMOD_STATUS_INIT_FAILED, NEEDLES("init refused by config"));
  hotmod_load_options_free(o);
  o = util_opts_config("panic-init");
  expect_load_fails(rt, PLUGIN("liblifecycle.so"), o, HOTMOD_STATUS_INIT_FAILED,
                    NEEDLES("init panicked on purpose"));
  hotmod_load_options_free(o);

  /* An expected SHA-256 is checked before any code of the file runs. */
  const char *ctor = PLUGIN("libctor.so");
  char sum[65] = "";
  REQUIRE(sha256sum(ctor, sum));
  CHECK_OK(hotmod_load_options_new(&o));
  CHECK_STATUS(hotmod_load_options_set_sha256(o, "abc"), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "64 hexadecimal digits");
  CHECK_STATUS(hotmod_load_options_set_sha256(o, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
               HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_OK(hotmod_load_options_set_sha256(o, "1111111111111111111111111111111111111111111111111111111111111111"));
  unsetenv("HOTMOD_FIXTURE_CTOR_RAN");
  expect_load_fails(rt, ctor, o, HOTMOD_STATUS_HASH_MISMATCH,
                    NEEDLES("expected 1111111111111111111111111111111111111111111111111111111111111111", sum));
  CHECK(getenv("HOTMOD_FIXTURE_CTOR_RAN") == NULL);
  char upper[65];
  for (int i = 0; i < 65; i++) upper[i] = (char)(sum[i] >= 'a' && sum[i] <= 'f' ? sum[i] - 32 : sum[i]);
  CHECK_OK(hotmod_load_options_set_sha256(o, upper)); /* hex digits in either case */
  CHECK_OK(hotmod_runtime_load(rt, ctor, o, NULL));
  CHECK(getenv("HOTMOD_FIXTURE_CTOR_RAN") != NULL);
  hotmod_load_options_free(o);
  CHECK_OK(hotmod_runtime_unload(rt, "ctor", 0));

  /* World-writable files and directories (tests run as root in CI, so
   * these live in a private 0700 temporary directory). */
  const char *tmp = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/hotmod-c-tests-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  char *dir = mkdtemp(tmpl);
  REQUIRE(dir != NULL);
  char sub[4200], file[4300];
  snprintf(sub, sizeof sub, "%s/plugins", dir);
  REQUIRE(mkdir(sub, 0755) == 0 && chmod(sub, 0755) == 0);
  snprintf(file, sizeof file, "%s/libprobe.so", sub);
  REQUIRE(util_copy_file(PLUGIN("libprobe.so"), file, 0666));
  expect_load_fails(rt, file, NULL, HOTMOD_STATUS_UNSAFE_FILE, NEEDLES("writable by anyone", "666"));
  hotmod_load_options *ww = NULL;
  CHECK_OK(hotmod_load_options_new(&ww));
  CHECK_OK(hotmod_load_options_set_allow_world_writable(ww, 1));
  CHECK_OK(hotmod_runtime_load(rt, file, ww, NULL));
  CHECK_OK(hotmod_runtime_unload(rt, "probe", 0));
  REQUIRE(chmod(file, 0644) == 0 && chmod(sub, 0777) == 0);
  expect_load_fails(rt, file, NULL, HOTMOD_STATUS_UNSAFE_FILE, NEEDLES(sub, "writable by anyone"));
  CHECK_OK(hotmod_runtime_load(rt, file, ww, NULL));
  CHECK_OK(hotmod_runtime_unload(rt, "probe", 0));
  REQUIRE(chmod(sub, 01777) == 0); /* sticky, like /tmp: nobody can swap our file */
  CHECK_OK(hotmod_runtime_load(rt, file, NULL, NULL));
  CHECK_OK(hotmod_runtime_unload(rt, "probe", 0));
  CHECK_OK(hotmod_load_options_set_allow_world_writable(ww, 0));
  REQUIRE(chmod(sub, 0777) == 0);
  expect_load_fails(rt, file, ww, HOTMOD_STATUS_UNSAFE_FILE, NEEDLES("writable by anyone"));
  hotmod_load_options_free(ww);
  unlink(file);
  rmdir(sub);
  rmdir(dir);

  /* After all that, only checksum is loaded and it works. */
  size_t n = 0;
  CHECK_OK(hotmod_runtime_module_count(rt, &n));
  CHECK_U64_EQ(n, 1);
  uint8_t dst[4];
  CHECK_OK(hotmod_runtime_call_into(rt, "checksum", "crc32", (const uint8_t *)"123456789", 9, dst, 4, &n));
  CHECK_U64_EQ(get_u32le(dst), CRC32_123456789);
  hotmod_runtime_free(rt);
  return check_summary();
}
