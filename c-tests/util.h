/*
 * util.h — helpers for the C tests that link libhotmod: where the plugins
 * (and the files that are not plugins) are, and small readers for call results.
 *
 * HOTMOD_PLUGIN_DIR (the project's plugins and fault-fixture plugins, built
 * by make plugins at the root) and HOTMOD_NOT_PLUGIN_DIR (the files that are
 * not plugins at all, made by c-tests/Makefile) must be set; the Makefile
 * sets both.
 */
#ifndef HOTMOD_C_TESTS_UTIL_H
#define HOTMOD_C_TESTS_UTIL_H

#include <hotmod.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* Copies `from` to `to` (created or truncated) and gives it `mode`. */
static inline int util_copy_file(const char *from, const char *to, mode_t mode) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return 0;
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    close(in);
    return 0;
  }
  char buf[65536];
  ssize_t n;
  int ok = 1;
  while ((n = read(in, buf, sizeof buf)) > 0) {
    if (write(out, buf, (size_t)n) != n) ok = 0;
  }
  ok = ok && n == 0 && fchmod(out, mode) == 0;
  close(in);
  return close(out) == 0 && ok;
}

/* SHA-256 of a file as sha256sum(1) prints it. */
static inline int sha256sum(const char *path, char out[65]) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "sha256sum -- '%s'", path);
  FILE *p = popen(cmd, "r");
  if (p == NULL) return 0;
  int ok = fscanf(p, "%64s", out) == 1;
  return pclose(p) == 0 && ok && strlen(out) == 64;
}

/* Makes CHECK_STATUS failures print the status names and last error. */
static inline void util_init(void) {
  check_last_error_hook = hotmod_last_error_message;
  check_status_str_hook = hotmod_status_str;
}

static inline const char *util_env_dir(const char *var) {
  const char *d = getenv(var);
  if (d == NULL || *d == '\0') {
    fprintf(stderr, "%s is not set (run the tests through c-tests/Makefile)\n", var);
    exit(2);
  }
  return d;
}

/* A path in a rotating set of static buffers: good for a few at a time,
 * on the main thread. */
static inline const char *util_path(const char *var, const char *file) {
  static char bufs[16][4096];
  static unsigned next;
  char *b = bufs[next++ % 16];
  snprintf(b, sizeof bufs[0], "%s/%s", util_env_dir(var), file);
  return b;
}

#define PLUGIN(file) util_path("HOTMOD_PLUGIN_DIR", (file))
#define NOT_PLUGIN(file) util_path("HOTMOD_NOT_PLUGIN_DIR", (file))

static inline uint32_t get_u32le(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_u64le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* The bytes of a buffer as a NUL-terminated copy (caller frees), or NULL. */
static inline char *buf_strdup(const hotmod_buffer *b) {
  const uint8_t *data = NULL;
  size_t len = 0;
  if (b == NULL || hotmod_buffer_data(b, &data, &len) != HOTMOD_STATUS_OK) return NULL;
  char *s = malloc(len + 1);
  if (s == NULL) return NULL;
  if (len) memcpy(s, data, len);
  s[len] = '\0';
  return s;
}

/* Calls module.method by name with a string input; returns the output as a
 * NUL-terminated copy (caller frees), or NULL with *status set. */
static inline char *call_str(const hotmod_runtime *rt, const char *module, const char *method, const char *input,
                             hotmod_status *status) {
  hotmod_buffer *b = NULL;
  hotmod_status st = hotmod_runtime_call(rt, module, method, (const uint8_t *)input, input ? strlen(input) : 0, &b);
  if (status) *status = st;
  if (st != HOTMOD_STATUS_OK) return NULL;
  char *s = buf_strdup(b);
  hotmod_buffer_free(b);
  return s;
}

/* Same through a method handle. */
static inline char *method_str(const hotmod_method *m, const char *input, hotmod_status *status) {
  hotmod_buffer *b = NULL;
  hotmod_status st = hotmod_method_call(m, (const uint8_t *)input, input ? strlen(input) : 0, &b);
  if (status) *status = st;
  if (st != HOTMOD_STATUS_OK) return NULL;
  char *s = buf_strdup(b);
  hotmod_buffer_free(b);
  return s;
}

/* CHECK that a call produced the string `want` (frees the result). */
#define CHECK_CALL_STR(expr_returning_malloced_str, want)        \
  do {                                                           \
    char *got_ = (expr_returning_malloced_str);                  \
    CHECK_STR_EQ(got_, (want));                                  \
    free(got_);                                                  \
  } while (0)

#endif /* HOTMOD_C_TESTS_UTIL_H */
