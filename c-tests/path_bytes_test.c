/*
 * path_bytes_test — file-system paths are bytes on Unix.
 *
 * A directory whose name holds the byte 0xff (not UTF-8) must work for
 * every function taking a path: load, upgrade, apply_manifest, watch_dir,
 * unwatch_dir; hotmod_module_path gives the same bytes back. Names (module,
 * method, host function) stay UTF-8, and a non-UTF-8 name is refused with
 * HOTMOD_STATUS_INVALID_ARGUMENT saying so.
 */
#include "util.h"

#include <stdlib.h>
#include <time.h>

static char dir[4096];

static const char *in_dir(const char *name) {
  static char bufs[4][4300];
  static unsigned next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
  return b;
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return 0;
  int ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok && chmod(path, 0644) == 0;
}

static int loaded(const hotmod_runtime *rt, const char *name) {
  hotmod_module *m = NULL;
  hotmod_status st = hotmod_runtime_module(rt, name, &m);
  hotmod_module_free(m);
  return st == HOTMOD_STATUS_OK;
}

static int module_path_is(const hotmod_module *m, const char *want) {
  const char *p = NULL;
  if (hotmod_module_path(m, &p) != HOTMOD_STATUS_OK || p == NULL) return 0;
  /* The loader may resolve the path; compare from the directory's name on. */
  const char *tail = strrchr(want, '/');
  const char *dir_name = strrchr(dir, '/');
  return strstr(p, dir_name) != NULL && strstr(p, tail) != NULL;
}

int main(void) {
  util_init();
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/hotmod-path-\xff-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  REQUIRE(mkdtemp(dir) != NULL);
  REQUIRE(chmod(dir, 0700) == 0);

  const char *v1 = in_dir("libchecksum-\xfe.so");
  const char *v2 = in_dir("libchecksum-v2.so");
  REQUIRE(util_copy_file(PLUGIN("libchecksum.so"), v1, 0644));
  REQUIRE(util_copy_file(PLUGIN("libchecksum-v2.so"), v2, 0644));

  hotmod_runtime *rt = NULL;
  CHECK_OK(hotmod_runtime_new(&rt));

  /* load and upgrade */
  hotmod_module *m = NULL;
  CHECK_OK(hotmod_runtime_load(rt, v1, NULL, &m));
  CHECK(m != NULL && module_path_is(m, v1));
  hotmod_module_free(m);
  m = NULL;
  CHECK_OK(hotmod_runtime_upgrade(rt, "checksum", v2, NULL, 0, &m));
  CHECK(m != NULL && module_path_is(m, v2));
  hotmod_module_free(m);
  CHECK_OK(hotmod_runtime_unload(rt, "checksum", 0));

  /* a missing file in such a directory is FILE_MISSING, not a UTF-8 error */
  CHECK_STATUS(hotmod_runtime_load(rt, in_dir("missing-\xff.so"), NULL, NULL), HOTMOD_STATUS_FILE_MISSING);

  /* apply_manifest: the manifest and the plugin it names both in it */
  const char *manifest = in_dir("plugins-\xff.toml");
  REQUIRE(write_text(manifest, "[[plugin]]\npath = \"libchecksum-v2.so\"\n"));
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  CHECK(loaded(rt, "checksum"));
  REQUIRE(write_text(manifest, "# empty\n"));
  CHECK_OK(hotmod_runtime_apply_manifest(rt, manifest));
  CHECK(!loaded(rt, "checksum"));
  REQUIRE(unlink(manifest) == 0);

  /* watch_dir on the non-UTF-8 directory: the files already there are
   * loaded at once (the watcher itself only considers file names that are
   * UTF-8, so the one left in it is libchecksum-v2.so) */
  REQUIRE(unlink(v1) == 0);
  CHECK_OK(hotmod_runtime_watch_dir(rt, dir, 50, 0));
  CHECK(loaded(rt, "checksum"));
  CHECK_STATUS(hotmod_runtime_watch_dir(rt, dir, 50, 0), HOTMOD_STATUS_BUSY);
  CHECK_OK(hotmod_runtime_unwatch_dir(rt, dir));
  CHECK_STATUS(hotmod_runtime_unwatch_dir(rt, dir), HOTMOD_STATUS_INVALID_ARGUMENT);

  /* names stay UTF-8, and the message says so */
  hotmod_method *h = NULL;
  CHECK_STATUS(hotmod_runtime_resolve(rt, "check\xffsum", "crc32", &h), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "expected UTF-8 for module");
  CHECK_STATUS(hotmod_runtime_resolve(rt, "checksum", "crc\xff", &h), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "expected UTF-8 for method");
  CHECK_STATUS(hotmod_runtime_unload(rt, "check\xffsum", 0), HOTMOD_STATUS_INVALID_ARGUMENT);
  CHECK(h == NULL);

  hotmod_runtime_free(rt);
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", dir);
  CHECK(system(cmd) == 0);
  return check_summary();
}
