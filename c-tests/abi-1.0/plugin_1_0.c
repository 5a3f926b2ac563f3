/*
 * plugin_1_0.c — a plugin built against the frozen 1.0 hotmod_plugin.h
 * (c-tests/abi-1.0), for the ABI compatibility test (abi_compat.c). Uses
 * every part of the 1.0 plugin ABI: config, host log / set_error /
 * call_host, output written into host space and handed over with a release
 * callback, state export and import, activate/deactivate, destroy.
 *
 * Built twice: -DCOMPAT_VERSION='"1.0.0"' and '"1.0.1"' (for an upgrade).
 * Do not change it to use anything newer: it stands for plugins already
 * built and shipped.
 */
#include "hotmod_plugin.h"

#include <stdatomic.h>
#include <stdlib.h>

#ifndef COMPAT_VERSION
#define COMPAT_VERSION "1.0.0"
#endif

typedef struct compat {
  const hotmod_host_api *host;
  uint64_t counter; /* carried across upgrades by export/import_state */
  uint8_t config[32];
  size_t config_len;
} compat;

static atomic_int released;

static int32_t init(const hotmod_host_api *host, hotmod_slice config, void **instance) {
  compat *c = calloc(1, sizeof *c);
  if (c == NULL) return HOTMOD_PLUGIN_ERROR;
  c->host = host;
  c->config_len = config.len < sizeof c->config ? config.len : sizeof c->config;
  if (c->config_len) memcpy(c->config, config.ptr, c->config_len);
  static const char hello[] = "compat plugin " COMPAT_VERSION " initialised";
  host->log(host->ctx, HOTMOD_LOG_INFO, (const uint8_t *)hello, sizeof hello - 1);
  *instance = c;
  return HOTMOD_PLUGIN_OK;
}

static int32_t activate(void *instance) {
  (void)instance;
  return HOTMOD_PLUGIN_OK;
}

static void deactivate(void *instance) { (void)instance; }

static void destroy(void *instance) { free(instance); }

static int32_t export_state(void *instance, hotmod_output *out) {
  compat *c = instance;
  return hotmod_output_write(out, &c->counter, sizeof c->counter);
}

static int32_t import_state(void *instance, hotmod_slice state) {
  compat *c = instance;
  if (state.len != sizeof c->counter) return HOTMOD_PLUGIN_ERROR;
  memcpy(&c->counter, state.ptr, sizeof c->counter);
  return HOTMOD_PLUGIN_OK;
}

/* Echoes its input into the offered space (or reports the size needed). */
static int32_t echo(void *instance, hotmod_slice in, hotmod_output *out) {
  (void)instance;
  return hotmod_output_write(out, in.ptr, in.len);
}

/* Increments and returns the counter (u64 little-endian host order). */
static int32_t count(void *instance, hotmod_slice in, hotmod_output *out) {
  compat *c = instance;
  (void)in;
  c->counter++;
  return hotmod_output_write(out, &c->counter, sizeof c->counter);
}

static void release_free(void *ctx, const uint8_t *data, size_t len) {
  (void)data;
  (void)len;
  free(ctx);
  atomic_fetch_add(&released, 1);
}

/* Hands over malloc'ed memory: the input reversed. */
static int32_t reverse(void *instance, hotmod_slice in, hotmod_output *out) {
  (void)instance;
  uint8_t *b = malloc(in.len ? in.len : 1);
  if (b == NULL) return HOTMOD_PLUGIN_ERROR;
  for (size_t i = 0; i < in.len; i++) b[i] = in.ptr[in.len - 1 - i];
  hotmod_output_give(out, b, in.len, release_free, b);
  return HOTMOD_PLUGIN_OK;
}

/* Fails with a message. */
static int32_t fail(void *instance, hotmod_slice in, hotmod_output *out) {
  compat *c = instance;
  (void)in;
  (void)out;
  hotmod_host_set_error(c->host, "compat.fail: failing on purpose");
  return HOTMOD_PLUGIN_ERROR;
}

/* Calls the host function "twice" with its input and returns its result. */
static int32_t via_host(void *instance, hotmod_slice in, hotmod_output *out) {
  compat *c = instance;
  uint8_t tmp[256];
  hotmod_output o = {tmp, sizeof tmp, NULL, 0, NULL, NULL};
  int32_t rc = c->host->call_host(c->host->ctx, "twice", in, &o);
  if (rc != 0) return HOTMOD_PLUGIN_ERROR;
  rc = hotmod_output_write(out, o.data, o.len);
  if (o.release) o.release(o.release_ctx, o.data, o.len);
  return rc;
}

/* The config bytes given to init. */
static int32_t config(void *instance, hotmod_slice in, hotmod_output *out) {
  compat *c = instance;
  (void)in;
  return hotmod_output_write(out, c->config, c->config_len);
}

/* Releases observed so far (u32). */
static int32_t releases(void *instance, hotmod_slice in, hotmod_output *out) {
  (void)instance;
  (void)in;
  uint32_t n = (uint32_t)atomic_load(&released);
  return hotmod_output_write(out, &n, sizeof n);
}

static const hotmod_method_def methods[] = {
    {"echo", "bytes -> bytes", echo},       {"count", "() -> u64", count},
    {"reverse", "bytes -> bytes", reverse}, {"fail", "() -> !", fail},
    {"via_host", "bytes -> bytes", via_host}, {"config", "() -> bytes", config},
    {"releases", "() -> u32", releases},
};

static const hotmod_plugin_descriptor descriptor = {
    HOTMOD_PLUGIN_MAGIC_BLOCK,
    HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD,
    "compat",
    COMPAT_VERSION,
    "Built against the 1.0 plugin header",
    NULL,
    0,
    methods,
    sizeof methods / sizeof methods[0],
    init,
    activate,
    deactivate,
    destroy,
    export_state,
    import_state,
};

HOTMOD_PLUGIN_ENTRY(descriptor)
