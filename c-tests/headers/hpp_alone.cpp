// hotmod_plugin.hpp on its own, every helper instantiated once (templates
// are only checked when used): a plugin class with every hook, methods
// taking the instance, a const instance and none, a dependency table, and
// both descriptor builders. Compiled as C++17 and C++20 by `make hpp`.
#include <hotmod_plugin.hpp>

#include <memory>
#include <string>
#include <vector>

namespace {

struct Every {
  hotmod::host host;
  Every(hotmod::host h, hotmod::bytes_view config) : host(h) { (void)config.as_string_view(); }
  void activate() {}
  void deactivate() {}
  void export_state(hotmod::output &out) { out.write(std::string_view("state")); }
  void import_state(hotmod::bytes_view state) {
    if (state.empty()) throw hotmod::invalid_input("empty state");
  }
};

struct Bare {};

void mut_method(Every &e, hotmod::bytes_view in, hotmod::output &out) {
  e.host.log(HOTMOD_LOG_DEBUG, "call");
  std::vector<std::uint8_t> r = e.host.call_module("dep", "m", in.subspan(1, 2));
  out.give(std::make_unique<std::vector<std::uint8_t>>(std::move(r)));
}
void const_method(const Every &, hotmod::bytes_view in, hotmod::output &out) { out.write(in); }
void free_method(hotmod::bytes_view, hotmod::output &out) noexcept { out.give_static(std::string_view("x")); }
void bare_method(Bare &, hotmod::bytes_view in, hotmod::output &out) {
  hotmod::byte_span b = out.alloc(in.size());
  for (std::size_t i = 0; i < b.size(); i++) b[i] = in[i];
}

constexpr hotmod_method_def methods[] = {
    hotmod::method<mut_method>("mut", "bytes -> bytes"),
    hotmod::method<const_method>("const", "bytes -> bytes"),
    hotmod::method<free_method>("free", "() -> ascii"),
};
constexpr hotmod_dependency_def deps[] = {hotmod::dependency("dep", "^1"), hotmod::dependency("opt", ">=2", true)};
constexpr hotmod_method_def bare_methods[] = {hotmod::method<bare_method>("copy", "bytes -> bytes")};

constexpr hotmod_plugin_descriptor every = hotmod::describe<Every>("every", "1.0.0", "all hooks", 0, methods, deps);
constexpr hotmod_plugin_descriptor bare =
    hotmod::describe<Bare>("bare", "1.0.0", nullptr, HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD, bare_methods);
static_assert(hotmod::detail::has_activate<Every>::value && hotmod::detail::has_export_state<Every>::value);
static_assert(every.dependency_count == 2 && every.method_count == 3 && every.flags == 0);
static_assert(bare.activate == nullptr && bare.import_state == nullptr && bare.method_count == 1);

}  // namespace

HOTMOD_PLUGIN_ENTRY(every)
const hotmod_plugin_descriptor *bare_descriptor() { return &bare; }
