/*
 * bench_call — what a C API handle call costs, piece by piece, against the
 * raw function pointer, in one run (make -C c-tests bench). Prints ns/call
 * and ratios; asserts nothing about time.
 *
 * For each method (probe.noop, checksum.length with a 16-byte input):
 *   raw                  the plugin's method called through its pointer, with
 *                        a hotmod_output on the stack (the plugin dlopen'ed
 *                        and initialised by this program): the floor
 *   hotmod_method_call_into   the handle call into caller space
 *   hotmod_method_call + _buffer_free   the handle call with an owned output
 *   hotmod_runtime_call_into  by name
 * and, once, the C API's own pieces through exports that do only them:
 *   boundary      hotmod_version_string: the cross-library call and the panic
 *                 boundary, no argument, no work
 *   arg checks    hotmod_buffer_data: + a handle and two out-parameters
 *                 checked, two results written
 *   TLS           hotmod_last_error_message: + one access to the library's
 *                 thread-local (general-dynamic model, __tls_get_addr)
 * The rest of a handle call (read section, counters, the plugin's output
 * slot and its checks) is the core's: call_into minus raw minus arg checks.
 *
 * Timing: median over ROUNDS rounds of ITERS calls, the variants
 * interleaved round by round.
 */
#include <hotmod.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 7
#define ITERS 2000000L

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct variant {
  const char *name;
  void (*run)(long iters);
  double samples[ROUNDS];
  double median;
} variant;

/* ---- the state the variants call into ------------------------------------ */

static hotmod_method_fn volatile raw_fn;
static void *raw_instance;
static const hotmod_method *handle;
static const hotmod_runtime *rt;
static const char *module_name, *method_name;
static const uint8_t *input;
static size_t input_len;
static hotmod_buffer *some_buffer;
static volatile size_t sink;

static void run_raw(long iters) {
  uint8_t dst[64];
  for (long i = 0; i < iters; i++) {
    hotmod_output out = {dst, sizeof dst, NULL, 0, NULL, NULL};
    hotmod_slice in = {input, input_len};
    if (raw_fn(raw_instance, in, &out) != 0) abort();
    sink = out.len;
  }
}

static void run_call_into(long iters) {
  uint8_t dst[64];
  size_t n;
  for (long i = 0; i < iters; i++) {
    if (hotmod_method_call_into(handle, input, input_len, dst, sizeof dst, &n) != HOTMOD_STATUS_OK) abort();
    sink = n;
  }
}

static void run_call_owned(long iters) {
  for (long i = 0; i < iters; i++) {
    hotmod_buffer *b;
    if (hotmod_method_call(handle, input, input_len, &b) != HOTMOD_STATUS_OK) abort();
    hotmod_buffer_free(b);
  }
}

static void run_by_name(long iters) {
  uint8_t dst[64];
  size_t n;
  for (long i = 0; i < iters; i++) {
    if (hotmod_runtime_call_into(rt, module_name, method_name, input, input_len, dst, sizeof dst, &n) !=
        HOTMOD_STATUS_OK)
      abort();
    sink = n;
  }
}

static void run_boundary(long iters) {
  for (long i = 0; i < iters; i++) sink = (size_t)hotmod_version_string();
}

static void run_arg_checks(long iters) {
  const uint8_t *d;
  size_t n;
  for (long i = 0; i < iters; i++) {
    if (hotmod_buffer_data(some_buffer, &d, &n) != HOTMOD_STATUS_OK) abort();
    sink = n;
  }
}

static void run_tls(long iters) {
  for (long i = 0; i < iters; i++) sink = (size_t)hotmod_last_error_message();
}

static void measure(variant *v, size_t nv) {
  for (size_t i = 0; i < nv; i++) v[i].run(ITERS / 10); /* warm up */
  for (int r = 0; r < ROUNDS; r++) {
    for (size_t i = 0; i < nv; i++) {
      double t = now_ns();
      v[i].run(ITERS);
      v[i].samples[r] = (now_ns() - t) / (double)ITERS;
    }
  }
  for (size_t i = 0; i < nv; i++) {
    qsort(v[i].samples, ROUNDS, sizeof(double), cmp_double);
    v[i].median = v[i].samples[ROUNDS / 2];
  }
}

/* ---- raw access to a plugin's method ------------------------------------- */

static void host_log(void *ctx, int32_t level, const uint8_t *msg, size_t len) {
  (void)ctx, (void)level, (void)msg, (void)len;
}
static void host_set_error(void *ctx, const uint8_t *msg, size_t len) { (void)ctx, (void)msg, (void)len; }

static void raw_method(const char *path, const char *method, hotmod_method_fn *fn, void **instance) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    exit(2);
  }
  hotmod_plugin_entry_fn entry;
  void *sym = dlsym(lib, HOTMOD_PLUGIN_ENTRY_SYMBOL);
  if (sym == NULL) exit(2);
  memcpy(&entry, &sym, sizeof entry); /* POSIX: dlsym's result may be a function */
  const hotmod_plugin_descriptor *d = entry();
  static hotmod_host_api host = {sizeof host, NULL, host_log, host_set_error, NULL, NULL};
  *instance = NULL;
  if (d->init != NULL && d->init(&host, (hotmod_slice){NULL, 0}, instance) != 0) exit(2);
  for (size_t i = 0; i < d->method_count; i++) {
    if (strcmp(d->methods[i].name, method) == 0) {
      *fn = d->methods[i].func;
      return;
    }
  }
  fprintf(stderr, "no method %s in %s\n", method, path);
  exit(2);
}

static void print(const variant *v, double raw, const char *note) {
  printf("  %-42s %7.2f ns  %5.2fx raw  %+6.2f ns  (spread %.2f-%.2f)%s\n", v->name, v->median, v->median / raw,
         v->median - raw, v->samples[0], v->samples[ROUNDS - 1], note);
}

int main(void) {
  const char *dir = getenv("HOTMOD_PLUGIN_DIR");
  if (dir == NULL) {
    fprintf(stderr, "HOTMOD_PLUGIN_DIR is not set\n");
    return 2;
  }
  hotmod_runtime *r = NULL;
  if (hotmod_runtime_new(&r) != HOTMOD_STATUS_OK) return 2;
  rt = r;
  char path[4096];
  static const struct {
    const char *file, *module, *method;
    const char *in;
  } cases[] = {
      {"libprobe.so", "probe", "noop", ""},
      {"libchecksum.so", "checksum", "length", "0123456789abcdef"},
  };
  printf("bench_call: C API handle call against the raw function pointer (%d rounds x %ld calls, median)\n", ROUNDS,
         ITERS);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    snprintf(path, sizeof path, "%s/%s", dir, cases[c].file);
    if (hotmod_runtime_load(rt, path, NULL, NULL) != HOTMOD_STATUS_OK) {
      fprintf(stderr, "load %s: %s\n", path, hotmod_last_error_message());
      return 2;
    }
    hotmod_method *h = NULL;
    if (hotmod_runtime_resolve(rt, cases[c].module, cases[c].method, &h) != HOTMOD_STATUS_OK) return 2;
    handle = h;
    hotmod_method_fn fn;
    raw_method(path, cases[c].method, &fn, &raw_instance);
    raw_fn = fn;
    module_name = cases[c].module;
    method_name = cases[c].method;
    input = (const uint8_t *)cases[c].in;
    input_len = strlen(cases[c].in);

    variant v[] = {
        {"raw function pointer", run_raw, {0}, 0},
        {"hotmod_method_call_into", run_call_into, {0}, 0},
        {"hotmod_method_call + hotmod_buffer_free", run_call_owned, {0}, 0},
        {"hotmod_runtime_call_into (by name)", run_by_name, {0}, 0},
    };
    measure(v, sizeof v / sizeof v[0]);
    printf("%s.%s (%zu-byte input):\n", cases[c].module, cases[c].method, input_len);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) print(&v[i], v[0].median, "");
    hotmod_method_free(h);
  }

  /* The C API's own pieces, against the last raw call measured. */
  if (hotmod_runtime_call(rt, "checksum", "length", NULL, 0, &some_buffer) != HOTMOD_STATUS_OK) return 2;
  variant raw = {"raw function pointer (checksum.length)", run_raw, {0}, 0};
  variant p[] = {
      {"boundary: hotmod_version_string", run_boundary, {0}, 0},
      {"+ arg checks: hotmod_buffer_data", run_arg_checks, {0}, 0},
      {"+ TLS: hotmod_last_error_message", run_tls, {0}, 0},
  };
  measure(&raw, 1);
  measure(p, sizeof p / sizeof p[0]);
  printf("C API pieces (exports doing only that part; the +ns column is against raw):\n");
  print(&raw, raw.median, "");
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) printf("  %-42s %7.2f ns  (spread %.2f-%.2f)\n", p[i].name,
                                                             p[i].median, p[i].samples[0], p[i].samples[ROUNDS - 1]);
  hotmod_buffer_free(some_buffer);
  hotmod_runtime_free(r);
  return 0;
}
