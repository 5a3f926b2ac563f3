/*
 * util.h — helpers for the C tests that link libhotmod: where the plugins
 * (and the files that are not plugins) are, and small readers for call results.
 *
 * Also: a recorder for runtime events, statistics lookup, load options with
 * a config, and the "new_id" host function of the lifecycle fixture.
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
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* CRC-32 (IEEE) of "123456789", the checksum plugin's known answer. */
#define CRC32_123456789 0xCBF43926u

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

/* Load options carrying `config` (caller frees). */
static inline hotmod_load_options *util_opts_config(const char *config) {
  hotmod_load_options *o = NULL;
  CHECK_OK(hotmod_load_options_new(&o));
  CHECK_OK(hotmod_load_options_set_config(o, (const uint8_t *)config, strlen(config)));
  return o;
}

/* The statistics of module.method in snapshot `s` into *out; 0 if absent. */
static inline int find_stats(const hotmod_stats *s, const char *module, const char *method, hotmod_method_stats *out) {
  size_t n = 0;
  if (hotmod_stats_count(s, &n) != HOTMOD_STATUS_OK) return 0;
  for (size_t i = 0; i < n; i++) {
    hotmod_method_stats m;
    if (hotmod_stats_get(s, i, &m) == HOTMOD_STATUS_OK && strcmp(m.module, module) == 0 &&
        strcmp(m.method, method) == 0) {
      *out = m;
      return 1;
    }
  }
  return 0;
}

/* Host function "new_id" of the lifecycle fixture: numbers its instances
 * uniquely across copies of the library. user_data: an atomic_uint_fast64_t. */
static inline int32_t lifecycle_new_id(void *ud, const uint8_t *in, size_t len, hotmod_output *out) {
  (void)in;
  (void)len;
  uint64_t id = atomic_fetch_add((atomic_uint_fast64_t *)ud, 1) + 1;
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(id >> (8 * i));
  return hotmod_output_write(out, b, 8) == HOTMOD_PLUGIN_OK ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* events: a recorder for hotmod_runtime_set_event_callback                  */

/* Pass on_event and event_log_free with an event_log (static: it is large)
 * set up by event_log_init. Events may arrive on any thread. An event with
 * a NULL string (never, per the header) is a failure on the spot; it is
 * recorded with "<NULL>" in its place. */
#define MAX_EVENTS 512
typedef struct event_log {
  pthread_mutex_t lock;
  int n;
  int kinds[MAX_EVENTS];
  int codes[MAX_EVENTS];
  char module[MAX_EVENTS][32];
  char version[MAX_EVENTS][16];
  char thread[MAX_EVENTS][16]; /* the name of the thread it was delivered on */
  char path[MAX_EVENTS][256];
  char message[MAX_EVENTS][512];
  int frees;
  int after_free; /* events delivered after the user_data was freed */
} event_log;

static inline void event_log_init(event_log *l) { pthread_mutex_init(&l->lock, NULL); }

static inline void on_event(void *ud, const hotmod_event *e) {
  event_log *l = ud;
  pthread_mutex_lock(&l->lock);
  if (l->frees) l->after_free++;
  if (l->n < MAX_EVENTS && e != NULL) {
    int i = l->n++;
    l->kinds[i] = e->kind;
    l->codes[i] = e->code;
    if (!e->module || !e->version || !e->path || !e->message) {
      check_fail_(__FILE__, __LINE__, "event of kind %d has a NULL string", (int)e->kind);
    }
    snprintf(l->module[i], sizeof l->module[i], "%s", e->module ? e->module : "<NULL>");
    snprintf(l->version[i], sizeof l->version[i], "%s", e->version ? e->version : "<NULL>");
    snprintf(l->path[i], sizeof l->path[i], "%s", e->path ? e->path : "<NULL>");
    snprintf(l->message[i], sizeof l->message[i], "%s", e->message ? e->message : "<NULL>");
    if (pthread_getname_np(pthread_self(), l->thread[i], sizeof l->thread[i]) != 0) l->thread[i][0] = '\0';
  }
  pthread_mutex_unlock(&l->lock);
}

static inline void event_log_free(void *ud) {
  event_log *l = ud;
  pthread_mutex_lock(&l->lock);
  l->frees++;
  pthread_mutex_unlock(&l->lock);
}

static inline int event_count(event_log *l) {
  pthread_mutex_lock(&l->lock);
  int n = l->n;
  pthread_mutex_unlock(&l->lock);
  return n;
}

/* Index of the first event of `kind` at or after `from` that matches every
 * non-NULL filter (module and version exactly, path_part and message_part
 * as substrings), or -1. */
static inline int event_find_(event_log *l, int from, int kind, const char *module, const char *version,
                              const char *path_part, const char *message_part) {
  int found = -1;
  pthread_mutex_lock(&l->lock);
  for (int i = from; i < l->n && found < 0; i++) {
    if (l->kinds[i] == kind && (!module || strcmp(l->module[i], module) == 0) &&
        (!version || strcmp(l->version[i], version) == 0) && (!path_part || strstr(l->path[i], path_part)) &&
        (!message_part || strstr(l->message[i], message_part))) {
      found = i;
    }
  }
  pthread_mutex_unlock(&l->lock);
  return found;
}

/* The first event of `kind` at or after `from` for module and version (each
 * when non-NULL), or -1. */
static inline int find_event(event_log *l, int from, int kind, const char *module, const char *version) {
  return event_find_(l, from, kind, module, version, NULL, NULL);
}

/* The first event of `kind` at or after `from` whose path contains
 * `path_part` (when non-NULL), or -1. */
static inline int find_event_path(event_log *l, int from, int kind, const char *path_part) {
  return event_find_(l, from, kind, NULL, NULL, path_part, NULL);
}

/* The first LOG event at or after `from` whose message contains `text`, or -1. */
static inline int find_log(event_log *l, int from, const char *text) {
  return event_find_(l, from, HOTMOD_EVENT_KIND_LOG, NULL, NULL, NULL, text);
}

/* Prints the events from index `from` on (after a failed CHECK). */
static inline void dump_events(event_log *l, int from) {
  pthread_mutex_lock(&l->lock);
  for (int i = from; i < l->n; i++) {
    fprintf(stderr, "    event %d [%s]: kind %d code %d %s@%s %s: %s\n", i, l->thread[i], l->kinds[i], l->codes[i],
            l->module[i], l->version[i], l->path[i], l->message[i]);
  }
  pthread_mutex_unlock(&l->lock);
}

#endif /* HOTMOD_C_TESTS_UTIL_H */
