/*
 * manifest_watch_test.c — TOML manifests and watched plugin directories
 * through the C API: hotmod_runtime_apply_manifest, hotmod_runtime_watch_dir
 * (with and without HOTMOD_WATCH_UNLOAD_ON_REMOVE) and
 * hotmod_runtime_unwatch_dir, as include/hotmod.h documents them.
 *
 * Everything happens in private mkdtemp directories (0700) holding copies
 * of the project's plugins, so manifests can use relative paths and files
 * can be replaced and removed. Watcher reactions are awaited by polling
 * (20 ms steps, 10 s at most); no fixed sleep decides an outcome. Where
 * "nothing happens" must be shown, a later change in the same directory
 * serves as the clock: once it was acted on, the earlier one was too.
 *
 * Plugins: $HOTMOD_PLUGIN_DIR (checksum 1.0.0, checksum-v2 2.0.0, text,
 * probe).
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static const char DIGITS[] = "123456789";

/* ------------------------------------------------------------------------ */
/* files                                                                     */

/* A new private directory (mode 0700) under $TMPDIR or /tmp. */
static char *make_tmpdir(char buf[4096]) {
  const char *tmp = getenv("TMPDIR");
  snprintf(buf, 4096, "%s/hotmod-mw-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  char *d = mkdtemp(buf);
  REQUIRE(d != NULL);
  REQUIRE(chmod(d, 0700) == 0);
  return d;
}

/* dir/name in one of a few rotating static buffers. */
static const char *in_dir(const char *dir, const char *name) {
  static char bufs[8][4200];
  static unsigned next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
  return b;
}

static int write_bytes(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 0;
  int ok = write(fd, data, len) == (ssize_t)len && fchmod(fd, 0644) == 0;
  return close(fd) == 0 && ok;
}

/* Copies `from` to `to` (mode 0644) through a hidden temporary name in the
 * same directory and a rename, so `to` appears complete at once. */
static int publish_copy(const char *from, const char *dir, const char *name) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s/.%s.partial", dir, name);
  return util_copy_file(from, tmp, 0644) && rename(tmp, in_dir(dir, name)) == 0;
}

static int write_text(const char *path, const char *text) { return write_bytes(path, text, strlen(text)); }

/* Removes `dir` and everything in it. */
static void remove_dir(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* ------------------------------------------------------------------------ */
/* runtime helpers                                                           */

static int is_loaded(const hotmod_runtime *rt, const char *name) {
  hotmod_module *m = NULL;
  hotmod_status st = hotmod_runtime_module(rt, name, &m);
  hotmod_module_free(m);
  return st == HOTMOD_STATUS_OK;
}

/* The path the module's active version was loaded from (malloced), or NULL. */
static char *module_path(const hotmod_runtime *rt, const char *name) {
  hotmod_module *m = NULL;
  if (hotmod_runtime_module(rt, name, &m) != HOTMOD_STATUS_OK) return NULL;
  const char *p = NULL;
  char *out = hotmod_module_path(m, &p) == HOTMOD_STATUS_OK ? strdup(p) : NULL;
  hotmod_module_free(m);
  return out;
}

/* Whether checksum.version (by name) answers `want`. */
static int checksum_version_is(const hotmod_runtime *rt, const char *want) {
  char *v = call_str(rt, "checksum", "version", NULL, NULL);
  int ok = v != NULL && strcmp(v, want) == 0;
  free(v);
  return ok;
}

static int crc_ok(const hotmod_runtime *rt) {
  uint8_t dst[4];
  size_t n = 0;
  return hotmod_runtime_call_into(rt, "checksum", "crc32", (const uint8_t *)DIGITS, 9, dst, sizeof dst, &n) ==
             HOTMOD_STATUS_OK &&
         n == 4 && get_u32le(dst) == CRC32_123456789;
}

/* Polls `cond(arg)` every 20 ms for up to 10 s (the watcher's reaction
 * time, valgrind included); returns whether it came true. */
static int wait_for(int (*cond)(const void *), const void *arg) {
  struct timespec start, now, step = {0, 20 * 1000 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (cond(arg)) return 1;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > 10000) return cond(arg);
    nanosleep(&step, NULL);
  }
}

/* ------------------------------------------------------------------------ */
/* manifests                                                                 */

static void test_manifest(void) {
  static event_log ev; /* static: large */
  event_log_init(&ev);
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  CHECK_OK(hotmod_runtime_set_event_callback(rt, on_event, &ev, event_log_free));

  char buf[4096];
  const char *dir = make_tmpdir(buf);
  REQUIRE(publish_copy(PLUGIN("libchecksum.so"), dir, "libchecksum.so"));
  REQUIRE(publish_copy(PLUGIN("libchecksum-v2.so"), dir, "libchecksum-v2.so"));
  REQUIRE(publish_copy(PLUGIN("libtext.so"), dir, "libtext.so"));
  REQUIRE(publish_copy(PLUGIN("libprobe.so"), dir, "libprobe.so"));
  char manifest[4200];
  snprintf(manifest, sizeof manifest, "%s/plugins.toml", dir);

  /* A module loaded by other means, which no manifest may touch. */
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libprobe.so"), NULL, NULL));

  /* ---- first application: both enabled entries load ------------------- */
  REQUIRE(write_text(manifest,
                     "# hotmod manifest (manifest_watch_test)\n"
                     "[[plugin]]\n"
                     "path = \"libchecksum.so\"\n"
                     "config = \"level=3\"\n"
                     "\n"
                     "[[plugin]]\n"
                     "path = \"libtext.so\"\n"
                     "enabled = true\n"
                     "config = \"greeting=hi\"\n"
                     "isolation = \"in-process\"\n"));
  int before = event_count(&ev);
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  CHECK(is_loaded(rt, "checksum"));
  CHECK(is_loaded(rt, "text"));
  size_t count = 0;
  CHECK_OK(hotmod_runtime_module_count(rt, &count));
  CHECK_U64_EQ(count, 3);
  CHECK_CALL_STR(call_str(rt, "checksum", "version", NULL, NULL), "1.0.0");
  CHECK(crc_ok(rt));
  /* Relative paths resolve against the manifest's directory. */
  char *p = module_path(rt, "checksum");
  CHECK_CONTAINS(p, dir);
  CHECK_CONTAINS(p, "/libchecksum.so");
  free(p);
  p = module_path(rt, "text");
  CHECK_CONTAINS(p, dir);
  free(p);
  /* The config string reached text's init (it logs it). */
  if (!CHECK(find_log(&ev, before, "text: config greeting=hi") >= 0)) dump_events(&ev, before);

  hotmod_method *ver = NULL, *crc = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "version", &ver)));
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc)));
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "1.0.0");

  /* Applying the same file again changes nothing. */
  before = event_count(&ev);
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  if (!CHECK(find_event_path(&ev, before, HOTMOD_EVENT_KIND_ACTIVATED, NULL) < 0)) dump_events(&ev, before);
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "1.0.0");

  /* ---- checksum now from the v2 copy: upgraded in place --------------- */
  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "config = \"level=3\"\n"
                     "\n"
                     "[[plugin]]\n"
                     "path = \"libtext.so\"\n"
                     "config = \"greeting=hi\"\n"));
  before = event_count(&ev);
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  CHECK_CALL_STR(call_str(rt, "checksum", "version", NULL, NULL), "2.0.0");
  /* Handles resolved before the upgrade follow it. */
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0");
  {
    uint8_t dst[4];
    size_t n = 0;
    CHECK_OK(hotmod_method_call_into(crc, (const uint8_t *)DIGITS, 9, dst, sizeof dst, &n));
    CHECK(n == 4 && get_u32le(dst) == CRC32_123456789);
  }
  p = module_path(rt, "checksum");
  CHECK_CONTAINS(p, "/libchecksum-v2.so");
  free(p);
  /* text's file and config did not change: not restarted. */
  CHECK(find_log(&ev, before, "text: config") < 0);
  CHECK(is_loaded(rt, "text"));

  /* ---- a changed config upgrades the module with it -------------------- */
  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "config = \"level=3\"\n"
                     "\n"
                     "[[plugin]]\n"
                     "path = \"libtext.so\"\n"
                     "config = \"greeting=hello\"\n"));
  before = event_count(&ev);
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  if (!CHECK(find_log(&ev, before, "text: config greeting=hello") >= 0)) dump_events(&ev, before);
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0");

  /* ---- disabling text unloads it ---------------------------------------- */
  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "config = \"level=3\"\n"
                     "\n"
                     "[[plugin]]\n"
                     "path = \"libtext.so\"\n"
                     "enabled = false\n"));
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  hotmod_module *m = NULL;
  CHECK_STATUS(hotmod_runtime_module(rt, "text", &m), HOTMOD_STATUS_MODULE_NOT_FOUND);
  CHECK(m == NULL);
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0");
  CHECK(is_loaded(rt, "probe")); /* not the manifest's */

  /* ---- a pinned SHA-256 that does not match ----------------------------- */
  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "config = \"level=3\"\n"
                     "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n"));
  CHECK_STATUS(hotmod_runtime_apply_manifest(rt, manifest), HOTMOD_STATUS_HASH_MISMATCH);
  CHECK_CONTAINS(hotmod_last_error_message(), in_dir(dir, "libchecksum-v2.so"));
  CHECK_CONTAINS(hotmod_last_error_message(), manifest);
  CHECK_CONTAINS(hotmod_last_error_message(), "line");
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0"); /* nothing changed */

  /* The right one is accepted (same bytes: nothing to do). */
  char sha[65], text[1024];
  REQUIRE(sha256sum(in_dir(dir, "libchecksum-v2.so"), sha));
  snprintf(text, sizeof text, "[[plugin]]\npath = \"libchecksum-v2.so\"\nconfig = \"level=3\"\nsha256 = \"%s\"\n", sha);
  REQUIRE(write_text(manifest, text));
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0");

  /* ---- invalid manifests: BAD_MANIFEST with file and line --------------- */
  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "colour = \"blue\"\n"));
  CHECK_STATUS(hotmod_runtime_apply_manifest(rt, manifest), HOTMOD_STATUS_BAD_MANIFEST);
  CHECK_CONTAINS(hotmod_last_error_message(), manifest);
  CHECK_CONTAINS(hotmod_last_error_message(), "line 3");
  CHECK_CONTAINS(hotmod_last_error_message(), "colour");

  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "isolation = \"out-of-process\"\n"));
  CHECK_STATUS(hotmod_runtime_apply_manifest(rt, manifest), HOTMOD_STATUS_BAD_MANIFEST);
  CHECK_CONTAINS(hotmod_last_error_message(), "line 3");

  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "sha256 = \"abc\"\n"));
  CHECK_STATUS(hotmod_runtime_apply_manifest(rt, manifest), HOTMOD_STATUS_BAD_MANIFEST);
  CHECK_CONTAINS(hotmod_last_error_message(), "line 3");

  const char *missing = in_dir(dir, "no-such-manifest.toml");
  CHECK_STATUS(hotmod_runtime_apply_manifest(rt, missing), HOTMOD_STATUS_BAD_MANIFEST);
  CHECK_CONTAINS(hotmod_last_error_message(), missing);

  /* A manifest entry may not take over a module loaded by other means. */
  REQUIRE(write_text(manifest,
                     "[[plugin]]\n"
                     "path = \"libchecksum-v2.so\"\n"
                     "config = \"level=3\"\n"
                     "[[plugin]]\n"
                     "path = \"libprobe.so\"\n"));
  CHECK_STATUS(hotmod_runtime_apply_manifest(rt, manifest), HOTMOD_STATUS_NAME_CONFLICT);
  CHECK_CONTAINS(hotmod_last_error_message(), in_dir(dir, "libprobe.so"));

  /* None of the failures changed anything. */
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0");
  CHECK(!is_loaded(rt, "text"));
  CHECK_OK(hotmod_runtime_module_count(rt, &count));
  CHECK_U64_EQ(count, 2);

  /* ---- an empty manifest unloads what it loaded, and only that ---------- */
  REQUIRE(write_text(manifest, "# nothing\n"));
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  CHECK(!is_loaded(rt, "checksum"));
  CHECK(is_loaded(rt, "probe"));
  uint8_t dst[4];
  size_t n = 0;
  CHECK_STATUS(hotmod_method_call_into(crc, (const uint8_t *)DIGITS, 9, dst, sizeof dst, &n),
               HOTMOD_STATUS_STALE_HANDLE);

  hotmod_method_free(crc);
  hotmod_method_free(ver);
  hotmod_runtime_free(rt);
  CHECK(ev.frees == 1 && ev.after_free == 0);
  remove_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* watched directories                                                       */

typedef struct {
  const hotmod_runtime *rt;
  const char *want;
} version_wait;

static int version_reached(const void *arg) {
  const version_wait *w = arg;
  return checksum_version_is(w->rt, w->want);
}

typedef struct {
  event_log *log;
  int from;
  int kind;
  const char *path_part;
} event_wait;

static int event_arrived(const void *arg) {
  const event_wait *w = arg;
  return find_event_path(w->log, w->from, w->kind, w->path_part) >= 0;
}

typedef struct {
  const hotmod_runtime *rt;
  const char *name;
  int loaded;
} module_wait;

static int module_state(const void *arg) {
  const module_wait *w = arg;
  return is_loaded(w->rt, w->name) == w->loaded;
}

static void test_watch(void) {
  static event_log ev;
  event_log_init(&ev);
  hotmod_runtime *rt = NULL;
  REQUIRE(hotmod_runtime_new(&rt) == HOTMOD_STATUS_OK);
  CHECK_OK(hotmod_runtime_set_event_callback(rt, on_event, &ev, event_log_free));

  /* ---- what cannot be watched ------------------------------------------- */
  char b0[4096], b1[4096], b2[4096];
  const char *scratch = make_tmpdir(b0);
  const char *nowhere = in_dir(scratch, "no-such-dir");
  CHECK_STATUS(hotmod_runtime_watch_dir(rt, nowhere, 100, 0), HOTMOD_STATUS_FILE_MISSING);
  CHECK_CONTAINS(hotmod_last_error_message(), nowhere);
  const char *plain = in_dir(scratch, "plain-file");
  REQUIRE(write_text(plain, "x"));
  CHECK_STATUS(hotmod_runtime_watch_dir(rt, plain, 100, 0), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(hotmod_runtime_unwatch_dir(rt, scratch), HOTMOD_STATUS_INVALID_ARGUMENT);

  /* ---- files already there load at once --------------------------------- */
  const char *dir = make_tmpdir(b1);
  REQUIRE(publish_copy(PLUGIN("libchecksum.so"), dir, "libchecksum.so"));
  CHECK_OK(hotmod_runtime_watch_dir(rt, dir, 100, 0));
  CHECK(is_loaded(rt, "checksum")); /* no waiting: loaded before the call returned */
  CHECK_CALL_STR(call_str(rt, "checksum", "version", NULL, NULL), "1.0.0");
  char *p = module_path(rt, "checksum");
  CHECK_CONTAINS(p, "/libchecksum.so");
  free(p);
  hotmod_method *ver = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "version", &ver)));

  /* The same directory again, however it is spelt: BUSY. */
  CHECK_STATUS(hotmod_runtime_watch_dir(rt, dir, 100, 0), HOTMOD_STATUS_BUSY);
  CHECK_CONTAINS(hotmod_last_error_message(), dir);
  char alias[4200];
  snprintf(alias, sizeof alias, "%s/", dir);
  CHECK_STATUS(hotmod_runtime_watch_dir(rt, alias, 100, HOTMOD_WATCH_UNLOAD_ON_REMOVE), HOTMOD_STATUS_BUSY);

  /* ---- a replaced file upgrades its module ------------------------------ */
  int before = event_count(&ev);
  REQUIRE(publish_copy(PLUGIN("libchecksum-v2.so"), dir, "libchecksum.so"));
  version_wait vw = {rt, "2.0.0"};
  if (!CHECK(wait_for(version_reached, &vw))) dump_events(&ev, before);
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0"); /* the earlier handle follows */
  int ac = find_event_path(&ev, before, HOTMOD_EVENT_KIND_ACTIVATED, "libchecksum.so");
  if (CHECK(ac >= 0)) CHECK_STR_EQ(ev.thread[ac], "hotmod-watch");

  /* ---- a corrupt file: UPGRADE_FAILED, the rest keeps serving ----------- */
  before = event_count(&ev);
  static const char junk[] = "\177ELF? no: this is not a shared library\n";
  REQUIRE(write_bytes(in_dir(dir, "libbad.so"), junk, sizeof junk - 1));
  event_wait fw = {&ev, before, HOTMOD_EVENT_KIND_UPGRADE_FAILED, "libbad.so"};
  if (CHECK(wait_for(event_arrived, &fw))) {
    int i = find_event_path(&ev, before, HOTMOD_EVENT_KIND_UPGRADE_FAILED, "libbad.so");
    CHECK(ev.codes[i] != HOTMOD_STATUS_OK);
    CHECK_CONTAINS(ev.message[i], "libbad.so");
    CHECK_STR_EQ(ev.thread[i], "hotmod-watch");
  } else {
    dump_events(&ev, before);
  }
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0");
  CHECK(crc_ok(rt));

  /* ---- without the flag, a removed file leaves its module running ------- */
  /* probe, dropped in after the removal, is the clock: once it is loaded,
   * the removal (noted earlier) has been acted on too. */
  REQUIRE(unlink(in_dir(dir, "libchecksum.so")) == 0);
  REQUIRE(publish_copy(PLUGIN("libprobe.so"), dir, "libprobe.so"));
  module_wait mw = {rt, "probe", 1};
  CHECK(wait_for(module_state, &mw));
  CHECK(is_loaded(rt, "checksum"));
  CHECK_CALL_STR(method_str(ver, NULL, NULL), "2.0.0");

  /* ---- unwatch: OK once, then INVALID_ARGUMENT ------------------------- */
  CHECK_OK(hotmod_runtime_unwatch_dir(rt, dir));
  CHECK_STATUS(hotmod_runtime_unwatch_dir(rt, dir), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), dir);
  CHECK(is_loaded(rt, "checksum") && is_loaded(rt, "probe")); /* what it loaded stays */

  /* Other spellings of the same directory: through a symbolic link, and
   * with a ".." component. The string given to watch_dir unwatches it, and
   * any spelling of a watched directory is BUSY (one watcher per
   * directory, or two would race to upgrade the same module). */
  char dotdot[4300];
  snprintf(alias, sizeof alias, "%s/link", scratch);
  REQUIRE(symlink(dir, alias) == 0);
  snprintf(dotdot, sizeof dotdot, "%s/../%s", scratch, strrchr(dir, '/') + 1);
  CHECK_OK(hotmod_runtime_watch_dir(rt, alias, 100, 0));
  CHECK_STATUS(hotmod_runtime_watch_dir(rt, dir, 100, 0), HOTMOD_STATUS_BUSY);
  CHECK_STATUS(hotmod_runtime_watch_dir(rt, dotdot, 100, 0), HOTMOD_STATUS_BUSY);
  CHECK_OK(hotmod_runtime_unwatch_dir(rt, alias));
  CHECK_OK(hotmod_runtime_watch_dir(rt, dotdot, 100, 0));
  CHECK_OK(hotmod_runtime_unwatch_dir(rt, dotdot));
  /* (Whatever the outcome above, leave no watcher on `dir` behind.) */
  while (hotmod_runtime_unwatch_dir(rt, dir) == HOTMOD_STATUS_OK) {
  }

  /* ---- with HOTMOD_WATCH_UNLOAD_ON_REMOVE, removal unloads -------------- */
  CHECK_OK(hotmod_runtime_unload(rt, "checksum", 0));
  const char *dir3 = make_tmpdir(b2);
  REQUIRE(publish_copy(PLUGIN("libchecksum.so"), dir3, "libchecksum.so"));
  CHECK_OK(hotmod_runtime_watch_dir(rt, dir3, 100, HOTMOD_WATCH_UNLOAD_ON_REMOVE));
  CHECK_CALL_STR(call_str(rt, "checksum", "version", NULL, NULL), "1.0.0");
  p = module_path(rt, "checksum");
  CHECK_CONTAINS(p, dir3);
  free(p);
  hotmod_method *ver3 = NULL;
  REQUIRE(CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "version", &ver3)));
  before = event_count(&ev);
  REQUIRE(unlink(in_dir(dir3, "libchecksum.so")) == 0);
  module_wait gone = {rt, "checksum", 0};
  if (!CHECK(wait_for(module_state, &gone))) dump_events(&ev, before);
  hotmod_buffer *out = NULL;
  CHECK_STATUS(hotmod_method_call(ver3, NULL, 0, &out), HOTMOD_STATUS_STALE_HANDLE);
  CHECK(out == NULL);
  CHECK(is_loaded(rt, "probe")); /* not from this directory */

  /* Put back, it loads again; the watcher is left running for the free. */
  REQUIRE(publish_copy(PLUGIN("libchecksum.so"), dir3, "libchecksum.so"));
  module_wait back = {rt, "checksum", 1};
  CHECK(wait_for(module_state, &back));
  CHECK(crc_ok(rt));

  /* ---- freeing the runtime stops the watcher still running ------------- */
  hotmod_method_free(ver3);
  hotmod_method_free(ver);
  hotmod_runtime_free(rt);
  CHECK(ev.frees == 1);
  CHECK(ev.after_free == 0);

  remove_dir(dir3);
  remove_dir(dir);
  remove_dir(scratch);
}

int main(void) {
  util_init();
  test_manifest();
  test_watch();
  return check_summary();
}
