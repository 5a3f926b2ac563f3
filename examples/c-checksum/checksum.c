/*
 * Example hotmod plugin in C: module "checksum".
 *
 * Uses only include/hotmod_plugin.h. Built twice by the Makefile: as
 * version 1.0.0, and with -DCHECKSUM_V2 as version 2.0.0, to show hot
 * upgrades. Both versions hand their call counter to their successor
 * through export_state/import_state.
 *
 * Methods:
 *   crc32     bytes -> u32le      CRC-32 (IEEE), written into the host buffer
 *   adler32   bytes -> u32le      Adler-32
 *   fnv1a64   bytes -> u64le      FNV-1a 64-bit
 *   length    bytes -> u64le      the input's length (reads no payload byte)
 *   hex       bytes -> ascii      lowercase hex, in memory the plugin allocates
 *                                 and the host releases (the zero-copy path)
 *   version   () -> ascii         "1.0.0" or "2.0.0", static plugin memory
 *   calls     () -> u64le         calls served by this module, across upgrades
 */
#include <hotmod_plugin.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifndef CHECKSUM_VERSION
#ifdef CHECKSUM_V2
#define CHECKSUM_VERSION "2.0.0"
#else
#define CHECKSUM_VERSION "1.0.0"
#endif
#endif

typedef struct checksum {
  const hotmod_host_api *host;
  atomic_uint_fast64_t calls;
  uint32_t crc_table[256];
} checksum;

static void put_u32le(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64le(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int32_t init(const hotmod_host_api *host, hotmod_slice config, void **instance) {
  (void)config;
  checksum *c = calloc(1, sizeof *c);
  if (c == NULL) {
    hotmod_host_set_error(host, "checksum: out of memory");
    return HOTMOD_PLUGIN_ERROR;
  }
  c->host = host;
  atomic_init(&c->calls, 0);
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t r = i;
    for (int k = 0; k < 8; k++) r = (r & 1) ? (r >> 1) ^ 0xEDB88320u : r >> 1;
    c->crc_table[i] = r;
  }
  *instance = c;
  return HOTMOD_PLUGIN_OK;
}

static void destroy(void *instance) { free(instance); }

static int32_t export_state(void *instance, hotmod_output *out) {
  checksum *c = instance;
  uint8_t state[8];
  put_u64le(state, atomic_load(&c->calls));
  return hotmod_output_write(out, state, sizeof state);
}

static int32_t import_state(void *instance, hotmod_slice state) {
  checksum *c = instance;
  if (state.len != 8) {
    hotmod_host_set_error(c->host, "checksum: expected 8 bytes of state");
    return HOTMOD_PLUGIN_ERROR;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | state.ptr[i];
  atomic_store(&c->calls, n);
  return HOTMOD_PLUGIN_OK;
}

static int32_t crc32(void *instance, hotmod_slice in, hotmod_output *out) {
  checksum *c = instance;
  atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < in.len; i++) crc = c->crc_table[(crc ^ in.ptr[i]) & 0xFF] ^ (crc >> 8);
  uint8_t r[4];
  put_u32le(r, crc ^ 0xFFFFFFFFu);
  return hotmod_output_write(out, r, sizeof r);
}

static int32_t adler32(void *instance, hotmod_slice in, hotmod_output *out) {
  checksum *c = instance;
  atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < in.len; i++) {
    a = (a + in.ptr[i]) % 65521u;
    b = (b + a) % 65521u;
  }
  uint8_t r[4];
  put_u32le(r, (b << 16) | a);
  return hotmod_output_write(out, r, sizeof r);
}

static int32_t fnv1a64(void *instance, hotmod_slice in, hotmod_output *out) {
  checksum *c = instance;
  atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < in.len; i++) h = (h ^ in.ptr[i]) * 0x100000001b3ull;
  uint8_t r[8];
  put_u64le(r, h);
  return hotmod_output_write(out, r, sizeof r);
}

static int32_t length(void *instance, hotmod_slice in, hotmod_output *out) {
  checksum *c = instance;
  atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
  uint8_t r[8];
  put_u64le(r, (uint64_t)in.len);
  return hotmod_output_write(out, r, sizeof r);
}

static void release_malloc(void *ctx, const uint8_t *data, size_t len) {
  (void)data;
  (void)len;
  free(ctx);
}

static int32_t hex(void *instance, hotmod_slice in, hotmod_output *out) {
  checksum *c = instance;
  atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
  static const char digits[] = "0123456789abcdef";
  uint8_t *buf = malloc(in.len * 2 + 1);
  if (buf == NULL) {
    hotmod_host_set_error(c->host, "checksum.hex: out of memory");
    return HOTMOD_PLUGIN_ERROR;
  }
  for (size_t i = 0; i < in.len; i++) {
    buf[2 * i] = (uint8_t)digits[in.ptr[i] >> 4];
    buf[2 * i + 1] = (uint8_t)digits[in.ptr[i] & 15];
  }
  hotmod_output_give(out, buf, in.len * 2, release_malloc, buf);
  return HOTMOD_PLUGIN_OK;
}

static int32_t version(void *instance, hotmod_slice in, hotmod_output *out) {
  checksum *c = instance;
  (void)in;
  atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
  static const char v[] = CHECKSUM_VERSION;
  /* Static plugin memory: no release callback; valid while the version is alive. */
  hotmod_output_give(out, (const uint8_t *)v, sizeof v - 1, NULL, NULL);
  return HOTMOD_PLUGIN_OK;
}

static int32_t calls(void *instance, hotmod_slice in, hotmod_output *out) {
  checksum *c = instance;
  (void)in;
  uint8_t r[8];
  put_u64le(r, atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed) + 1);
  return hotmod_output_write(out, r, sizeof r);
}

static const hotmod_method_def methods[] = {
    {"crc32", "bytes -> u32le", crc32},
    {"adler32", "bytes -> u32le", adler32},
    {"fnv1a64", "bytes -> u64le", fnv1a64},
    {"length", "bytes -> u64le", length},
    {"hex", "bytes -> ascii (plugin memory)", hex},
    {"version", "() -> ascii", version},
    {"calls", "() -> u64le", calls},
};

static const hotmod_plugin_descriptor descriptor = {
    HOTMOD_PLUGIN_MAGIC_BLOCK,
    HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD,
    "checksum",
    CHECKSUM_VERSION,
    "Checksums and hex encoding (C example)",
    NULL,
    0,
    methods,
    sizeof methods / sizeof methods[0],
    init,
    NULL,
    NULL,
    destroy,
    export_state,
    import_state,
};

HOTMOD_PLUGIN_ENTRY(descriptor)
