// A plugin written in C++ with the header's own macros, as its
// documentation promises ("to write a plugin in C or C++"). The Makefile
// checks that the shared library exports the entry symbol under its C name
// "hotmod_plugin_v1" (not a C++-mangled one) and the host test loads it.
#include "hotmod_plugin.h"

#include <cstring>

namespace {

int32_t shout(void *, hotmod_slice in, hotmod_output *out) {
  if (in.len > out->capacity) {
    out->len = in.len;
    return HOTMOD_PLUGIN_OUTPUT_TOO_SMALL;
  }
  for (size_t i = 0; i < in.len; i++) {
    uint8_t c = in.ptr[i];
    out->buf[i] = (c >= 'a' && c <= 'z') ? static_cast<uint8_t>(c - 32) : c;
  }
  out->data = out->buf;
  out->len = in.len;
  return HOTMOD_PLUGIN_OK;
}

const hotmod_method_def methods[] = {
    {"shout", "bytes -> bytes", shout},
};

const hotmod_plugin_descriptor descriptor = {
    HOTMOD_PLUGIN_MAGIC_BLOCK, HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD, "cpp", "1.0.0", "C++ plugin", nullptr, 0, methods, 1,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

HOTMOD_PLUGIN_ENTRY(descriptor)
