/*
 * C trampolines of the hotmod Go SDK. The descriptor points here; each
 * function forwards to an exported Go function (_cgo_export.h). Method i has
 * its own trampoline, so the Go side finds the method by index without a
 * lookup.
 */
#include "bridge.h"
#include "_cgo_export.h"

static int32_t go_init(const hotmod_host_api *host, hotmod_slice config, void **instance) {
  return hotmodGoInit((hotmod_host_api *)host, config, instance);
}
static int32_t go_activate(void *instance) { return hotmodGoActivate(instance); }
static void go_deactivate(void *instance) { hotmodGoDeactivate(instance); }
static void go_destroy(void *instance) { hotmodGoDestroy(instance); }
static int32_t go_export_state(void *instance, hotmod_output *out) { return hotmodGoExportState(instance, out); }
static int32_t go_import_state(void *instance, hotmod_slice state) { return hotmodGoImportState(instance, state); }

void hotmod_go_set_hooks(hotmod_plugin_descriptor *d, unsigned mask) {
  d->init = go_init;
  d->destroy = go_destroy;
  d->activate = (mask & HOTMOD_GO_HOOK_ACTIVATE) ? go_activate : NULL;
  d->deactivate = (mask & HOTMOD_GO_HOOK_DEACTIVATE) ? go_deactivate : NULL;
  d->export_state = (mask & HOTMOD_GO_HOOK_EXPORT) ? go_export_state : NULL;
  d->import_state = (mask & HOTMOD_GO_HOOK_IMPORT) ? go_import_state : NULL;
}

void hotmod_go_release(void *ctx, const uint8_t *data, size_t len) {
  (void)data;
  (void)len;
  free(ctx);
}

#define M1(n)                                                                  \
  static int32_t m##n(void *i, hotmod_slice in, hotmod_output *out) {          \
    return hotmodGoMethod(n, i, in, out);                                      \
  }
#define M8(n) M1(n##0) M1(n##1) M1(n##2) M1(n##3) M1(n##4) M1(n##5) M1(n##6) M1(n##7)
#define R1(n) m##n,
#define R8(n) R1(n##0) R1(n##1) R1(n##2) R1(n##3) R1(n##4) R1(n##5) R1(n##6) R1(n##7)

/* The indices are octal literals (leading 0), so pasting one more digit
 * multiplies by 8: M8(01) defines methods 010 … 017, that is 8 … 15. */
M8(0) M8(01) M8(02) M8(03) M8(04) M8(05) M8(06) M8(07)
M8(010) M8(011) M8(012) M8(013) M8(014) M8(015) M8(016) M8(017)

static const hotmod_method_fn trampolines[HOTMOD_GO_MAX_METHODS] = {
  R8(0) R8(01) R8(02) R8(03) R8(04) R8(05) R8(06) R8(07)
  R8(010) R8(011) R8(012) R8(013) R8(014) R8(015) R8(016) R8(017)
};

hotmod_method_fn hotmod_go_method_fn(size_t i) {
  return i < HOTMOD_GO_MAX_METHODS ? trampolines[i] : NULL;
}
