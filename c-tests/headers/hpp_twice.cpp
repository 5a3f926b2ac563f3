// hotmod_plugin.hpp included twice, after hotmod_plugin.h and beside
// hotmod.h, with a plugin declared through HOTMOD_CPP_PLUGIN.
#include <hotmod_plugin.h>
#include <hotmod_plugin.hpp>
#include <hotmod_plugin.hpp>
#include <hotmod.h>

namespace {
struct Twice {};
void noop(Twice &, hotmod::bytes_view, hotmod::output &) {}
constexpr hotmod_method_def methods[] = {hotmod::method<noop>("noop", "() -> ()")};
}  // namespace

HOTMOD_CPP_PLUGIN(Twice, "twice", "1.0.0", "included twice", HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD, methods)
