/*
 * check.h — the tiny assertion kit shared by the C tests.
 *
 * Every CHECK counts one assertion; a failure prints where and why and the
 * test keeps going, so one run reports every broken contract. A test ends
 * with `return check_summary();`, which prints the closing line
 * "N passed, M failed" and returns non-zero when anything failed.
 *
 * Counters are atomic so worker threads may CHECK too. Depends on nothing of
 * hotmod: the dlopen test uses it without linking the library, and installs
 * its looked-up hotmod_last_error_message / hotmod_status_str as hooks.
 */
#ifndef HOTMOD_C_TESTS_CHECK_H
#define HOTMOD_C_TESTS_CHECK_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int check_passed_;
static atomic_int check_failed_;

/* Optional hooks that enrich status failures (set them when the API is up). */
static const char *(*check_last_error_hook)(void);
static const char *(*check_status_str_hook)(int32_t);

static inline void check_fail_(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  flockfile(stderr);
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  funlockfile(stderr);
  va_end(ap);
  atomic_fetch_add(&check_failed_, 1);
}

static inline int check_bool_(int ok, const char *file, int line, const char *expr) {
  if (ok) {
    atomic_fetch_add(&check_passed_, 1);
  } else {
    check_fail_(file, line, "%s", expr);
  }
  return ok;
}

static inline int check_status_(int32_t got, int32_t want, const char *file, int line, const char *expr) {
  if (got == want) {
    atomic_fetch_add(&check_passed_, 1);
    return 1;
  }
  const char *got_s = check_status_str_hook ? check_status_str_hook(got) : "?";
  const char *want_s = check_status_str_hook ? check_status_str_hook(want) : "?";
  const char *msg = check_last_error_hook ? check_last_error_hook() : "";
  check_fail_(file, line, "%s\n    expected status %d (%s), found %d (%s)\n    last error: %s", expr, (int)want, want_s,
              (int)got, got_s, msg);
  return 0;
}

static inline int check_str_eq_(const char *got, const char *want, const char *file, int line, const char *expr) {
  if (got != NULL && want != NULL && strcmp(got, want) == 0) {
    atomic_fetch_add(&check_passed_, 1);
    return 1;
  }
  check_fail_(file, line, "%s\n    expected \"%s\", found \"%s\"", expr, want ? want : "(NULL)", got ? got : "(NULL)");
  return 0;
}

static inline int check_contains_(const char *hay, const char *needle, const char *file, int line, const char *expr) {
  if (hay != NULL && needle != NULL && strstr(hay, needle) != NULL) {
    atomic_fetch_add(&check_passed_, 1);
    return 1;
  }
  check_fail_(file, line, "%s\n    expected to contain \"%s\", found \"%s\"", expr, needle ? needle : "(NULL)",
              hay ? hay : "(NULL)");
  return 0;
}

static inline int check_u64_eq_(uint64_t got, uint64_t want, const char *file, int line, const char *expr) {
  if (got == want) {
    atomic_fetch_add(&check_passed_, 1);
    return 1;
  }
  check_fail_(file, line, "%s\n    expected %llu (0x%llx), found %llu (0x%llx)", expr, (unsigned long long)want,
              (unsigned long long)want, (unsigned long long)got, (unsigned long long)got);
  return 0;
}

/* CHECK(cond): a boolean assertion. Returns whether it held. */
#define CHECK(cond) check_bool_(!!(cond), __FILE__, __LINE__, #cond)
/* CHECK_STATUS(expr, want): expr returns a status code equal to want. */
#define CHECK_STATUS(expr, want) check_status_((int32_t)(expr), (int32_t)(want), __FILE__, __LINE__, #expr)
#define CHECK_OK(expr) CHECK_STATUS(expr, 0)
#define CHECK_STR_EQ(got, want) check_str_eq_((got), (want), __FILE__, __LINE__, #got " == " #want)
#define CHECK_CONTAINS(hay, needle) check_contains_((hay), (needle), __FILE__, __LINE__, #hay " contains " #needle)
#define CHECK_U64_EQ(got, want) \
  check_u64_eq_((uint64_t)(got), (uint64_t)(want), __FILE__, __LINE__, #got " == " #want)

/* Aborts the test (counted as a failure) when a precondition for the rest
 * of it does not hold. */
#define REQUIRE(cond)                                                       \
  do {                                                                      \
    if (!CHECK(cond)) {                                                     \
      fprintf(stderr, "precondition failed, stopping\n");                   \
      printf("%d passed, %d failed\n", atomic_load(&check_passed_),         \
             atomic_load(&check_failed_));                                  \
      exit(1);                                                              \
    }                                                                       \
  } while (0)

/* Prints "N passed, M failed" and returns the process exit status. */
static inline int check_summary(void) {
  int p = atomic_load(&check_passed_), f = atomic_load(&check_failed_);
  fflush(stderr);
  printf("%d passed, %d failed\n", p, f);
  fflush(stdout);
  return f == 0 && p > 0 ? 0 : 1;
}

#endif /* HOTMOD_C_TESTS_CHECK_H */
