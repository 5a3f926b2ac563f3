/*
 * C side of the hotmod Go SDK: declarations shared by the cgo preambles and
 * bridge.c. Plugin authors never include this file.
 */
#ifndef HOTMOD_GO_BRIDGE_H
#define HOTMOD_GO_BRIDGE_H

#include <hotmod_plugin.h>
#include <stddef.h>
#include <stdlib.h>

/* Number of method trampolines bridge.c defines: the most methods one Go
 * plugin may register. A method's C function pointer must be distinct per
 * method (the ABI passes only the instance), so each index has its own. */
#define HOTMOD_GO_MAX_METHODS 128

/* Bits of hotmod_go_set_hooks' mask: which optional hooks the plugin has. */
#define HOTMOD_GO_HOOK_ACTIVATE 1
#define HOTMOD_GO_HOOK_DEACTIVATE 2
#define HOTMOD_GO_HOOK_EXPORT 4
#define HOTMOD_GO_HOOK_IMPORT 8

/* The instance pointer the runtime holds: C memory, so C never keeps a Go
 * pointer. */
typedef struct hotmod_go_instance {
  const hotmod_host_api *host;
} hotmod_go_instance;

/* The trampoline of method index i, or NULL past HOTMOD_GO_MAX_METHODS. */
hotmod_method_fn hotmod_go_method_fn(size_t i);

/* Fills the descriptor's hook pointers: init and destroy always, the others
 * by mask. */
void hotmod_go_set_hooks(hotmod_plugin_descriptor *d, unsigned mask);

/* Release callback for output memory the SDK allocated with malloc (ctx is
 * the allocation). Pure C: releasing an output never enters Go. */
void hotmod_go_release(void *ctx, const uint8_t *data, size_t len);

/* Calls an output's release callback, once, and forgets it. */
static inline void hotmod_go_release_output(hotmod_output *out) {
  if (out->release != NULL) {
    hotmod_release_fn release = out->release;
    out->release = NULL;
    release(out->release_ctx, out->data, out->len);
  }
}


/* Whether the host table is present, long enough to hold `field`, and sets it. */
#define HOTMOD_GO_HAS(h, field) \
  ((h) != NULL && (h)->size >= offsetof(hotmod_host_api, field) + sizeof((h)->field) && (h)->field != NULL)

static inline void hotmod_go_log(const hotmod_host_api *h, int32_t level, const void *p, size_t n) {
  if (HOTMOD_GO_HAS(h, log)) h->log(h->ctx, level, (const uint8_t *)p, n);
}

static inline void hotmod_go_set_error(const hotmod_host_api *h, const void *p, size_t n) {
  if (HOTMOD_GO_HAS(h, set_error)) h->set_error(h->ctx, (const uint8_t *)p, n);
}

/* Host calls answer 2001 (method not found) when the host offers no such service. */
static inline int32_t hotmod_go_call_host(const hotmod_host_api *h, const char *name, const void *p, size_t n,
                                          hotmod_output *out) {
  if (!HOTMOD_GO_HAS(h, call_host)) return 2001;
  hotmod_slice in = {(const uint8_t *)p, n};
  return h->call_host(h->ctx, name, in, out);
}

static inline int32_t hotmod_go_call_module(const hotmod_host_api *h, const char *module, const char *method,
                                            const void *p, size_t n, hotmod_output *out) {
  if (!HOTMOD_GO_HAS(h, call_module)) return 2001;
  hotmod_slice in = {(const uint8_t *)p, n};
  return h->call_module(h->ctx, module, method, in, out);
}

#endif
