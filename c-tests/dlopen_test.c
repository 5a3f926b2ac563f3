/*
 * dlopen_test.c — a host that is not linked against libhotmod: it opens
 * "libhotmod.so.1" by its SONAME with dlopen(), looks the API up with
 * dlsym()/dlvsym(), loads a plugin, calls it (by handle and by name, into
 * its own buffer and through a zero-copy buffer), and closes everything.
 *
 * The declarations of include/hotmod.h are used for types only; the
 * pointer types below are checked against them at compile time, so a
 * signature change in the header breaks this build.
 */
#include <dlfcn.h>
#include <hotmod.h>

#include "check.h"

/* Looks up `name` as a function pointer of the header's own type. */
#define LOOKUP(lib, var, name)                                                    \
  do {                                                                            \
    void *sym_ = dlsym((lib), #name);                                             \
    if (!CHECK(sym_ != NULL)) fprintf(stderr, "    dlsym(%s): %s\n", #name, dlerror()); \
    memcpy(&(var), &sym_, sizeof(var));                                           \
    (void)sizeof((var) = (name)); /* type check against the header, not evaluated */ \
  } while (0)

struct api {
  const char *(*version_string)(void);
  const char *(*status_str)(int32_t);
  const char *(*last_error_message)(void);
  hotmod_status (*runtime_new)(hotmod_runtime **);
  void (*runtime_free)(hotmod_runtime *);
  hotmod_status (*runtime_load)(const hotmod_runtime *, const char *, const hotmod_load_options *, hotmod_module **);
  hotmod_status (*runtime_resolve)(const hotmod_runtime *, const char *, const char *, hotmod_method **);
  hotmod_status (*method_call_into)(const hotmod_method *, const uint8_t *, size_t, uint8_t *, size_t, size_t *);
  hotmod_status (*runtime_call)(const hotmod_runtime *, const char *, const char *, const uint8_t *, size_t,
                                hotmod_buffer **);
  hotmod_status (*buffer_data)(const hotmod_buffer *, const uint8_t **, size_t *);
  void (*buffer_free)(hotmod_buffer *);
  void (*method_free)(hotmod_method *);
  hotmod_status (*module_name)(const hotmod_module *, const char **);
  void (*module_free)(hotmod_module *);
};

int main(void) {
  const char *plugins = getenv("HOTMOD_PLUGIN_DIR");
  if (plugins == NULL) {
    fprintf(stderr, "HOTMOD_PLUGIN_DIR is not set\n");
    return 2;
  }
  /* Not linked: the library is not in the process until we open it. */
  CHECK(dlopen("libhotmod.so.1", RTLD_NOW | RTLD_NOLOAD) == NULL);

  void *lib = dlopen("libhotmod.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!CHECK(lib != NULL)) {
    fprintf(stderr, "    dlopen(libhotmod.so.1): %s\n", dlerror());
    return check_summary();
  }
  struct api api;
  LOOKUP(lib, api.version_string, hotmod_version_string);
  LOOKUP(lib, api.status_str, hotmod_status_str);
  LOOKUP(lib, api.last_error_message, hotmod_last_error_message);
  LOOKUP(lib, api.runtime_new, hotmod_runtime_new);
  LOOKUP(lib, api.runtime_free, hotmod_runtime_free);
  LOOKUP(lib, api.runtime_load, hotmod_runtime_load);
  LOOKUP(lib, api.runtime_resolve, hotmod_runtime_resolve);
  LOOKUP(lib, api.method_call_into, hotmod_method_call_into);
  LOOKUP(lib, api.runtime_call, hotmod_runtime_call);
  LOOKUP(lib, api.buffer_data, hotmod_buffer_data);
  LOOKUP(lib, api.buffer_free, hotmod_buffer_free);
  LOOKUP(lib, api.method_free, hotmod_method_free);
  LOOKUP(lib, api.module_name, hotmod_module_name);
  LOOKUP(lib, api.module_free, hotmod_module_free);
  if (check_failed_ != 0) return check_summary();
  check_last_error_hook = api.last_error_message;
  check_status_str_hook = api.status_str;

  /* The exports carry their version node; internal symbols are not exported. */
  CHECK(dlvsym(lib, "hotmod_runtime_new", "HOTMOD_1.0") != NULL);
  CHECK(dlsym(lib, "rust_begin_unwind") == NULL);

  CHECK_STR_EQ(api.version_string(), HOTMOD_VERSION_STRING);
  CHECK_STR_EQ(api.status_str(HOTMOD_STATUS_STALE_HANDLE), "stale handle");

  hotmod_runtime *rt = NULL;
  if (CHECK_OK(api.runtime_new(&rt))) {
    char path[4096];
    snprintf(path, sizeof path, "%s/libchecksum.so", plugins);
    hotmod_module *m = NULL;
    CHECK_OK(api.runtime_load(rt, path, NULL, &m));
    const char *name = NULL;
    CHECK_OK(api.module_name(m, &name));
    CHECK_STR_EQ(name, "checksum");

    hotmod_method *crc = NULL;
    CHECK_OK(api.runtime_resolve(rt, "checksum", "crc32", &crc));
    uint8_t out[4];
    size_t n = 0;
    CHECK_OK(api.method_call_into(crc, (const uint8_t *)"123456789", 9, out, sizeof out, &n));
    CHECK(n == 4 && (out[0] | out[1] << 8 | out[2] << 16 | (uint32_t)out[3] << 24) == 0xCBF43926u);

    hotmod_buffer *b = NULL;
    CHECK_OK(api.runtime_call(rt, "checksum", "hex", (const uint8_t *)"\x01\x02", 2, &b));
    const uint8_t *data = NULL;
    CHECK_OK(api.buffer_data(b, &data, &n));
    CHECK(n == 4 && memcmp(data, "0102", 4) == 0);
    api.buffer_free(b);

    CHECK_STATUS(api.runtime_call(rt, "checksum", "nope", NULL, 0, &b), HOTMOD_STATUS_METHOD_NOT_FOUND);
    CHECK_CONTAINS(api.last_error_message(), "nope");

    api.method_free(crc);
    api.module_free(m);
    api.runtime_free(rt);
  }
  check_last_error_hook = NULL;
  check_status_str_hook = NULL;
  CHECK(dlclose(lib) == 0);
  return check_summary();
}
