/*
 * teardown_test — hotmod called while a thread is being torn down.
 *
 * glibc runs a thread's C++/Rust thread_local destructors first and its
 * pthread_key destructors after them, so a pthread_key destructor that calls
 * hotmod finds the library's thread-locals (the last-error store among them)
 * already destroyed. Such calls must work, and failing ones must report
 * through their status and message (or a static text saying why there is
 * none), never aborting the process ("panic in a function that cannot
 * unwind") and never leaking the message.
 *
 * Three threads: one that used hotmod (and set a last error) before
 * exiting; one that only made a successful call before exiting (its first
 * failure, the first use of the last-error store, is in the destructor);
 * and one whose first hotmod call of any kind is in the destructor.
 *
 * The third is skipped under the leak checkers (ASan, valgrind): the
 * core's read-section registration is a Rust thread-local with a
 * destructor, and a first use during teardown registers a destructor glibc
 * never runs (32 bytes and the reader record leak, hotmod_core::rcu::
 * register). The plain run still shows it never aborts and reports right.
 */
#include "util.h"

typedef struct teardown_case {
  const hotmod_runtime *rt;
  const hotmod_method *crc;
  int used_before_exit; /* 2: a call and a failure, 1: a call, 0: nothing */
  /* Filled in by the destructor. */
  int ran;
  hotmod_status call_into, call, by_name, load_missing, null_out, resolve_missing;
  uint32_t crc_into, crc_owned;
  int message_ok, status_str_ok, version_ok;
  char load_message[512];
} teardown_case;

static pthread_key_t key;

static void call_everything(teardown_case *c) {
  const uint8_t *in = (const uint8_t *)"123456789";
  uint8_t dst[16];
  size_t n = 0;
  c->call_into = hotmod_method_call_into(c->crc, in, 9, dst, sizeof dst, &n);
  if (c->call_into == HOTMOD_STATUS_OK && n == 4) c->crc_into = get_u32le(dst);

  hotmod_buffer *b = NULL;
  c->call = hotmod_method_call(c->crc, in, 9, &b);
  const uint8_t *data = NULL;
  size_t len = 0;
  if (c->call == HOTMOD_STATUS_OK && hotmod_buffer_data(b, &data, &len) == HOTMOD_STATUS_OK && len == 4)
    c->crc_owned = get_u32le(data);
  hotmod_buffer_free(b);

  b = NULL;
  c->by_name = hotmod_runtime_call(c->rt, "checksum", "crc32", in, 9, &b);
  hotmod_buffer_free(b);

  /* Failures: each one sets the last error. */
  c->load_missing = hotmod_runtime_load(c->rt, "/nonexistent/libnothing.so", NULL, NULL);
  const char *msg = hotmod_last_error_message();
  c->message_ok = msg != NULL;
  snprintf(c->load_message, sizeof c->load_message, "%s", msg ? msg : "(NULL)");
  c->null_out = hotmod_runtime_new(NULL);
  msg = hotmod_last_error_message();
  c->message_ok = c->message_ok && msg != NULL;
  hotmod_method *m = NULL;
  c->resolve_missing = hotmod_runtime_resolve(c->rt, "checksum", "no_such_method", &m);
  hotmod_method_free(m);
  msg = hotmod_last_error_message();
  c->message_ok = c->message_ok && msg != NULL && strlen(msg) < 4096;

  const char *s = hotmod_status_str(HOTMOD_STATUS_NULL_ARGUMENT);
  c->status_str_ok = s != NULL && strlen(s) > 0;
  c->version_ok = strcmp(hotmod_version_string(), HOTMOD_VERSION_STRING) == 0;
}

static void destructor(void *p) {
  teardown_case *c = p;
  call_everything(c);
  c->ran = 1;
}

static void *thread_main(void *p) {
  teardown_case *c = p;
  if (c->used_before_exit >= 1) {
    /* Create the thread's read-section record. */
    uint8_t dst[16];
    size_t n = 0;
    (void)hotmod_method_call_into(c->crc, (const uint8_t *)"x", 1, dst, sizeof dst, &n);
  }
  if (c->used_before_exit >= 2) (void)hotmod_runtime_new(NULL); /* and a last error */
  pthread_setspecific(key, c);
  return NULL;
}

static void check_case(teardown_case *c, const char *what) {
  fprintf(stderr, "-- %s\n", what);
  CHECK(c->ran);
  CHECK_OK(c->call_into);
  CHECK(c->crc_into == CRC32_123456789);
  CHECK_OK(c->call);
  CHECK(c->crc_owned == CRC32_123456789);
  CHECK_OK(c->by_name);
  CHECK_STATUS(c->load_missing, HOTMOD_STATUS_FILE_MISSING);
  CHECK_STATUS(c->null_out, HOTMOD_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(c->resolve_missing, HOTMOD_STATUS_METHOD_NOT_FOUND);
  CHECK(c->message_ok);
  /* Either the real message (the store could still be used) or the static
   * one saying why there is none; never garbage, never an abort. */
  fprintf(stderr, "   last error after the failed load: %s\n", c->load_message);
  CHECK(strstr(c->load_message, "libnothing.so") != NULL || strstr(c->load_message, "thread is exiting") != NULL);
  CHECK(c->status_str_ok);
  CHECK(c->version_ok);
}

int main(void) {
  util_init();
  hotmod_runtime *rt = NULL;
  CHECK_OK(hotmod_runtime_new(&rt));
  CHECK_OK(hotmod_runtime_load(rt, PLUGIN("libchecksum.so"), NULL, NULL));
  hotmod_method *crc = NULL;
  CHECK_OK(hotmod_runtime_resolve(rt, "checksum", "crc32", &crc));
  CHECK(pthread_key_create(&key, destructor) == 0);

  int leak_checked = getenv("HOTMOD_UNDER_VALGRIND") != NULL;
#if defined(__SANITIZE_ADDRESS__)
  leak_checked = 1;
#endif
  static teardown_case cases[3];
  static const char *const what[3] = {
      "thread whose first hotmod call is in its key destructor",
      "thread that made a call, whose first failure is in its key destructor",
      "thread that used hotmod before exiting",
  };
  for (int i = 2; i >= 0; i--) {
    if (i == 0 && leak_checked) {
      fprintf(stderr, "-- %s: skipped under the leak checker (known core leak, see the top)\n", what[i]);
      continue;
    }
    cases[i] = (teardown_case){.rt = rt, .crc = crc, .used_before_exit = i};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_main, &cases[i]) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    check_case(&cases[i], what[i]);
    /* The store (a pthread key) outlives the thread-locals on Linux: the
     * real message, freed by the store's own key destructor in the next
     * destructor round (ASan and valgrind see no leak). */
    CHECK_CONTAINS(cases[i].load_message, "libnothing.so");
  }

  /* The main thread's own state is untouched by the others' teardown. */
  CHECK_STATUS(hotmod_runtime_new(NULL), HOTMOD_STATUS_NULL_ARGUMENT);
  CHECK_CONTAINS(hotmod_last_error_message(), "expected a non-NULL out");

  pthread_key_delete(key);
  hotmod_method_free(crc);
  hotmod_runtime_free(rt);
  return check_summary();
}
