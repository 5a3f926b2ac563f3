/*
 * hotmod_plugin.hpp — C++ helpers over the hotmod plugin ABI v1
 * (hotmod_plugin.h). Header-only, C++17 or later; nothing to link.
 *
 * A plugin is a class (its instance) and methods that are plain functions:
 *
 *   #include <hotmod_plugin.hpp>
 *
 *   struct Text {
 *     explicit Text(hotmod::host h, hotmod::bytes_view config);  // init; may throw
 *   };
 *
 *   static void upper(Text &, hotmod::bytes_view in, hotmod::output &out) {
 *     hotmod::byte_span dst = out.alloc(in.size());   // host space or owned memory
 *     for (std::size_t i = 0; i < in.size(); i++) dst[i] = (uint8_t)std::toupper(in[i]);
 *   }
 *
 *   static constexpr hotmod_method_def methods[] = {
 *       hotmod::method<upper>("upper", "bytes -> bytes"),
 *   };
 *   HOTMOD_CPP_PLUGIN(Text, "text", "1.0.0", "Text tools", HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD, methods)
 *
 * What the helpers do:
 *
 * - Exceptions stop at the method boundary: a method (or hook) that throws
 *   fails with HOTMOD_PLUGIN_ERROR (hotmod status 2003) and what() as the
 *   message; hotmod::invalid_input gives HOTMOD_PLUGIN_INVALID_INPUT; an
 *   exception of a type not derived from std::exception gives a generic
 *   message. Nothing unwinds into the host.
 * - hotmod::output is an RAII writer: memory a method allocated or handed
 *   over is released if the method throws, and the host then sees no result.
 *   Results are written into the space the host offered when they fit, else
 *   into memory handed to the host with a release callback: a method never
 *   runs twice for want of space.
 * - hotmod::bytes_view / hotmod::byte_span are span-like views (convertible
 *   to std::span in C++20, to std::string_view always).
 * - The instance class's optional members are the lifecycle hooks:
 *   a constructor taking (hotmod::host, hotmod::bytes_view), (hotmod::host)
 *   or nothing is init; void activate(); void deactivate(); the destructor
 *   is destroy; void export_state(hotmod::output &); void
 *   import_state(hotmod::bytes_view). Methods take (Instance &, bytes_view,
 *   output &) or just (bytes_view, output &).
 *
 * Methods may be called from many threads at once: they receive the
 * instance by reference and must synchronise what they change.
 */
#ifndef HOTMOD_PLUGIN_HPP
#define HOTMOD_PLUGIN_HPP

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "hotmod_plugin.hpp needs C++17 or later; C plugins include hotmod_plugin.h"
#endif

#include "hotmod_plugin.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#if __cplusplus >= 202002L && __has_include(<span>)
#include <span>
#define HOTMOD_HAS_STD_SPAN 1
#else
#define HOTMOD_HAS_STD_SPAN 0
#endif

namespace hotmod {

/** A read-only view of bytes (std::span<const uint8_t> where C++20 has it). */
class bytes_view {
 public:
  constexpr bytes_view() noexcept = default;
  constexpr bytes_view(const std::uint8_t *data, std::size_t size) noexcept : data_(data), size_(size) {}
  /** The bytes of a borrowed ABI slice. */
  explicit constexpr bytes_view(hotmod_slice s) noexcept : data_(s.ptr), size_(s.ptr != nullptr ? s.len : 0) {}
  /** The bytes of a string (no terminating NUL). */
  bytes_view(std::string_view s) noexcept
      : data_(reinterpret_cast<const std::uint8_t *>(s.data())), size_(s.size()) {}
#if HOTMOD_HAS_STD_SPAN
  constexpr bytes_view(std::span<const std::uint8_t> s) noexcept : data_(s.data()), size_(s.size()) {}
  constexpr operator std::span<const std::uint8_t>() const noexcept { return {data_, size_}; }
#endif

  constexpr const std::uint8_t *data() const noexcept { return data_; }
  constexpr std::size_t size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr const std::uint8_t *begin() const noexcept { return data_; }
  constexpr const std::uint8_t *end() const noexcept { return data_ + size_; }
  /** Byte i; i < size() is the caller's to ensure, as for std::span. */
  constexpr std::uint8_t operator[](std::size_t i) const noexcept { return data_[i]; }
  /** The bytes from offset on (at most count of them); empty past the end. */
  constexpr bytes_view subspan(std::size_t offset, std::size_t count = SIZE_MAX) const noexcept {
    if (offset >= size_) return {};
    std::size_t n = size_ - offset;
    return {data_ + offset, count < n ? count : n};
  }
  /** The same bytes as characters. */
  std::string_view as_string_view() const noexcept {
    return {reinterpret_cast<const char *>(data_), size_};
  }
  /** A copy of the bytes. */
  std::vector<std::uint8_t> to_vector() const { return {begin(), end()}; }

 private:
  const std::uint8_t *data_ = nullptr;
  std::size_t size_ = 0;
};

/** A writable view of bytes (std::span<uint8_t> where C++20 has it). */
class byte_span {
 public:
  constexpr byte_span() noexcept = default;
  constexpr byte_span(std::uint8_t *data, std::size_t size) noexcept : data_(data), size_(size) {}
#if HOTMOD_HAS_STD_SPAN
  constexpr operator std::span<std::uint8_t>() const noexcept { return {data_, size_}; }
#endif
  constexpr operator bytes_view() const noexcept { return {data_, size_}; }

  constexpr std::uint8_t *data() const noexcept { return data_; }
  constexpr std::size_t size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr std::uint8_t *begin() const noexcept { return data_; }
  constexpr std::uint8_t *end() const noexcept { return data_ + size_; }
  constexpr std::uint8_t &operator[](std::size_t i) const noexcept { return data_[i]; }

 private:
  std::uint8_t *data_ = nullptr;
  std::size_t size_ = 0;
};

/** Thrown by a method whose input is not what it accepts:
 * HOTMOD_PLUGIN_INVALID_INPUT, what() as the message. */
class invalid_input : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/** A host call (call_host, call_module) that returned a hotmod status code. */
class status_error : public std::runtime_error {
 public:
  status_error(const std::string &op, std::int32_t code)
      : std::runtime_error(op + " failed with hotmod status " + std::to_string(code)), code_(code) {}
  /** The hotmod status code (see the status table in hotmod.h). */
  std::int32_t code() const noexcept { return code_; }

 private:
  std::int32_t code_;
};

namespace detail {
/** The hotmod status a callee answers when it needed more space than offered. */
constexpr std::int32_t status_output_too_large = 2009;

template <class T>
void release_owned(void *ctx, const std::uint8_t *, std::size_t) noexcept {
  delete static_cast<T *>(ctx);
}

inline void release_malloc(void *ctx, const std::uint8_t *, std::size_t) noexcept { std::free(ctx); }

/** Whether the host table is present, long enough to hold the field of the
 * given offset and size, and sets it. */
#define HOTMOD_CPP_HOST_HAS(api, field)                                                         \
  ((api) != nullptr && (api)->size >= offsetof(hotmod_host_api, field) + sizeof((api)->field) && \
   (api)->field != nullptr)
}  // namespace detail

/** The output slot of one call, as an RAII writer.
 *
 * Each of write, alloc, give and give_static replaces the result set
 * before. The result is kept only if the method returns normally (the
 * trampoline then calls commit()); if the method throws, the destructor
 * releases what was allocated or handed over and clears the slot. Valid only
 * during the call. */
class output {
 public:
  explicit output(hotmod_output *slot) noexcept : slot_(slot) {}
  output(const output &) = delete;
  output &operator=(const output &) = delete;
  ~output() {
    if (!committed_) clear();
  }

  /** Bytes the host offered; results up to this size go straight into it. */
  std::size_t capacity() const noexcept { return slot_->buf != nullptr ? slot_->capacity : 0; }

  /** n bytes of result space to fill in place: the host's own space when n
   * fits, otherwise memory handed to the host (no copy either way). Throws
   * std::bad_alloc when that memory cannot be had. */
  byte_span alloc(std::size_t n) {
    clear();
    if (n <= capacity()) {
      slot_->data = slot_->buf;
      slot_->len = n;
      return {slot_->buf, n};
    }
    auto *p = static_cast<std::uint8_t *>(std::malloc(n));
    if (p == nullptr) throw std::bad_alloc();
    give(p, n, detail::release_malloc, p);
    return {p, n};
  }

  /** Makes a copy of bytes the result (one copy, see alloc). */
  void write(bytes_view bytes) {
    byte_span dst = alloc(bytes.size());
    if (!bytes.empty()) std::memcpy(dst.data(), bytes.data(), bytes.size());
  }

  /** Makes a copy of the characters of s the result. */
  void write(std::string_view s) { write(bytes_view(s)); }

  /** Hands len bytes of the plugin's own memory to the host without a copy;
   * release(ctx, data, len) is called exactly once, from any thread, by the
   * host when done with them, or by this writer if the method throws. */
  void give(const std::uint8_t *data, std::size_t len, hotmod_release_fn release, void *ctx) noexcept {
    clear();
    slot_->data = data;
    slot_->len = len;
    slot_->release = release;
    slot_->release_ctx = ctx;
  }

  /** Hands an owned container (std::string, std::vector<uint8_t>, …) to the
   * host without a copy; it is deleted when the host releases it. */
  template <class Container>
  void give(std::unique_ptr<Container> owned) noexcept {
    static_assert(sizeof(*owned->data()) == 1, "give() takes containers of bytes or chars");
    const auto *data = reinterpret_cast<const std::uint8_t *>(owned->data());
    std::size_t len = owned->size();
    give(data, len, detail::release_owned<Container>, owned.release());
  }

  /** Points the result at bytes that live as long as the plugin (static
   * data): no copy, nothing to release. */
  void give_static(bytes_view bytes) noexcept {
    clear();
    slot_->data = bytes.data();
    slot_->len = bytes.size();
  }

  /** Keeps the result: called by the trampoline after a normal return. */
  void commit() noexcept { committed_ = true; }

  /** Drops the result, releasing memory handed over so far. */
  void clear() noexcept {
    if (slot_->release != nullptr) {
      hotmod_release_fn release = slot_->release;
      slot_->release = nullptr;
      release(slot_->release_ctx, slot_->data, slot_->len);
    }
    slot_->data = nullptr;
    slot_->len = 0;
    slot_->release_ctx = nullptr;
  }

 private:
  hotmod_output *slot_;
  bool committed_ = false;
};

/** The host's services as received at init: copy it freely, use it from
 * any thread until the instance is destroyed. */
class host {
 public:
  constexpr host() noexcept = default;
  explicit constexpr host(const hotmod_host_api *api) noexcept : api_(api) {}

  /** The raw table (may be NULL in tests). */
  const hotmod_host_api *api() const noexcept { return api_; }

  /** Writes a line to the host's log (HOTMOD_LOG_* level). */
  void log(std::int32_t level, std::string_view msg) const noexcept {
    if (HOTMOD_CPP_HOST_HAS(api_, log)) {
      api_->log(api_->ctx, level, reinterpret_cast<const std::uint8_t *>(msg.data()), msg.size());
    }
  }

  /** Sets the error message of the call in progress on this thread. */
  void set_error(std::string_view msg) const noexcept {
    if (HOTMOD_CPP_HOST_HAS(api_, set_error)) {
      api_->set_error(api_->ctx, reinterpret_cast<const std::uint8_t *>(msg.data()), msg.size());
    }
  }

  /** Calls the function the host program registered under name; a copy of
   * its result. Throws status_error with the hotmod status on failure. */
  std::vector<std::uint8_t> call_host(const std::string &name, bytes_view in) const {
    if (!HOTMOD_CPP_HOST_HAS(api_, call_host)) {
      throw status_error("call_host \"" + name + "\"", 2001);
    }
    return call_with_slot("call_host \"" + name + "\"", [&](hotmod_output *out) {
      return api_->call_host(api_->ctx, name.c_str(), hotmod_slice{in.data(), in.size()}, out);
    });
  }

  /** Calls method of module, a declared dependency (its active version);
   * a copy of the result. Throws status_error on failure. */
  std::vector<std::uint8_t> call_module(const std::string &module, const std::string &method, bytes_view in) const {
    std::string op = "call_module \"" + module + "." + method + "\"";
    if (!HOTMOD_CPP_HOST_HAS(api_, call_module)) {
      throw status_error(op, 2001);
    }
    return call_with_slot(op, [&](hotmod_output *out) {
      return api_->call_module(api_->ctx, module.c_str(), method.c_str(), hotmod_slice{in.data(), in.size()}, out);
    });
  }

 private:
  template <class F>
  static std::vector<std::uint8_t> call_with_slot(const std::string &op, F call) {
    std::vector<std::uint8_t> space(256);
    for (int attempt = 0;; attempt++) {
      hotmod_output out{space.data(), space.size(), nullptr, 0, nullptr, nullptr};
      std::int32_t rc = call(&out);
      if (rc == detail::status_output_too_large && attempt == 0 && out.len > space.size()) {
        space.resize(out.len);
        if (out.release != nullptr) out.release(out.release_ctx, out.data, out.len);
        continue;
      }
      std::vector<std::uint8_t> result;
      if (rc == 0 && out.data != nullptr) result.assign(out.data, out.data + out.len);
      if (out.release != nullptr) out.release(out.release_ctx, out.data, out.len);
      if (rc != 0) throw status_error(op, rc);
      return result;
    }
  }

  const hotmod_host_api *api_ = nullptr;
};

namespace detail {

/** What the runtime holds as the instance pointer (always converted to and
 * from instance_base *, so methods that take no instance still find the
 * host). */
struct instance_base {
  hotmod::host host;
};

template <class P>
struct instance : instance_base {
  P plugin;
  template <class... A>
  explicit instance(hotmod::host h, A &&...args) : instance_base{h}, plugin(std::forward<A>(args)...) {}
};

template <class P>
instance<P> *cast(void *inst) noexcept {
  return static_cast<instance<P> *>(static_cast<instance_base *>(inst));
}

/** Runs f, turning any exception into a status and a message for the host. */
template <class F>
std::int32_t guard(const host &h, const char *what, F &&f) noexcept {
  try {
    f();
    return HOTMOD_PLUGIN_OK;
  } catch (const invalid_input &e) {
    h.set_error(e.what());
    return HOTMOD_PLUGIN_INVALID_INPUT;
  } catch (const std::exception &e) {
    h.set_error(e.what());
    return HOTMOD_PLUGIN_ERROR;
  } catch (...) {
    try {
      h.set_error(std::string(what) + " threw a C++ exception of a type not derived from std::exception");
    } catch (...) {
      h.set_error("a C++ exception of a type not derived from std::exception was thrown");
    }
    return HOTMOD_PLUGIN_ERROR;
  }
}

template <class T>
struct method_traits {
  static_assert(sizeof(T) == 0,
                "a hotmod method is void f(Instance &, hotmod::bytes_view, hotmod::output &) "
                "or void f(hotmod::bytes_view, hotmod::output &)");
};
template <class P>
struct method_traits<void (*)(P &, bytes_view, output &)> {
  using instance_type = std::remove_const_t<P>;
  static constexpr bool with_instance = true;
};
template <class P>
struct method_traits<void (*)(P &, bytes_view, output &) noexcept> : method_traits<void (*)(P &, bytes_view, output &)> {};
template <>
struct method_traits<void (*)(bytes_view, output &)> {
  using instance_type = void;
  static constexpr bool with_instance = false;
};
template <>
struct method_traits<void (*)(bytes_view, output &) noexcept> : method_traits<void (*)(bytes_view, output &)> {};

template <auto F>
std::int32_t method_trampoline(void *inst, hotmod_slice in, hotmod_output *slot) noexcept {
  using traits = method_traits<decltype(F)>;
  if (inst == nullptr || slot == nullptr) return HOTMOD_PLUGIN_ERROR;
  output out(slot);
  if constexpr (traits::with_instance) {
    auto *i = cast<typename traits::instance_type>(inst);
    return guard(i->host, "method", [&] {
      F(i->plugin, bytes_view(in), out);
      out.commit();
    });
  } else {
    return guard(static_cast<instance_base *>(inst)->host, "method", [&] {
      F(bytes_view(in), out);
      out.commit();
    });
  }
}

template <class P, class = void>
struct has_activate : std::false_type {};
template <class P>
struct has_activate<P, std::void_t<decltype(std::declval<P &>().activate())>> : std::true_type {};
template <class P, class = void>
struct has_deactivate : std::false_type {};
template <class P>
struct has_deactivate<P, std::void_t<decltype(std::declval<P &>().deactivate())>> : std::true_type {};
template <class P, class = void>
struct has_export_state : std::false_type {};
template <class P>
struct has_export_state<P, std::void_t<decltype(std::declval<P &>().export_state(std::declval<output &>()))>>
    : std::true_type {};
template <class P, class = void>
struct has_import_state : std::false_type {};
template <class P>
struct has_import_state<P, std::void_t<decltype(std::declval<P &>().import_state(bytes_view()))>>
    : std::true_type {};

template <class P>
std::int32_t init(const hotmod_host_api *api, hotmod_slice config, void **out) noexcept {
  host h(api);
  if (out == nullptr) return HOTMOD_PLUGIN_ERROR;
  return guard(h, "init", [&] {
    if constexpr (std::is_constructible_v<P, host, bytes_view>) {
      *out = static_cast<instance_base *>(new instance<P>(h, h, bytes_view(config)));
    } else if constexpr (std::is_constructible_v<P, host>) {
      *out = static_cast<instance_base *>(new instance<P>(h, h));
    } else {
      static_assert(std::is_default_constructible_v<P>,
                    "the plugin class needs a constructor taking (hotmod::host, hotmod::bytes_view), "
                    "(hotmod::host) or nothing");
      *out = static_cast<instance_base *>(new instance<P>(h));
    }
  });
}

template <class P>
std::int32_t activate(void *inst) noexcept {
  auto *i = cast<P>(inst);
  return guard(i->host, "activate", [&] { i->plugin.activate(); });
}

template <class P>
void deactivate(void *inst) noexcept {
  auto *i = cast<P>(inst);
  std::int32_t rc = guard(i->host, "deactivate", [&] { i->plugin.deactivate(); });
  if (rc != HOTMOD_PLUGIN_OK) i->host.log(HOTMOD_LOG_ERROR, "deactivate threw an exception");
}

template <class P>
void destroy(void *inst) noexcept {
  auto *i = cast<P>(inst);
  host h = i->host;
  std::int32_t rc = guard(h, "destroy", [&] { delete i; });
  if (rc != HOTMOD_PLUGIN_OK) h.log(HOTMOD_LOG_ERROR, "destroy: the destructor threw an exception");
}

template <class P>
std::int32_t export_state(void *inst, hotmod_output *slot) noexcept {
  auto *i = cast<P>(inst);
  output out(slot);
  return guard(i->host, "export_state", [&] {
    i->plugin.export_state(out);
    out.commit();
  });
}

template <class P>
std::int32_t import_state(void *inst, hotmod_slice state) noexcept {
  auto *i = cast<P>(inst);
  return guard(i->host, "import_state", [&] { i->plugin.import_state(bytes_view(state)); });
}

}  // namespace detail

/** One method-table entry for F, a function taking (Instance &, bytes_view,
 * output &) or (bytes_view, output &). Exceptions stay inside. */
template <auto F>
constexpr hotmod_method_def method(const char *name, const char *signature) noexcept {
  return hotmod_method_def{name, signature, &detail::method_trampoline<F>};
}

/** One dependency-table entry. */
constexpr hotmod_dependency_def dependency(const char *name, const char *version_req, bool optional = false) noexcept {
  return hotmod_dependency_def{name, version_req, optional ? std::uint32_t{HOTMOD_DEPENDENCY_OPTIONAL} : 0u};
}

namespace detail {
template <class P>
constexpr hotmod_activate_fn activate_hook() noexcept {
  if constexpr (has_activate<P>::value) return &activate<P>;
  return nullptr;
}
template <class P>
constexpr hotmod_deactivate_fn deactivate_hook() noexcept {
  if constexpr (has_deactivate<P>::value) return &deactivate<P>;
  return nullptr;
}
template <class P>
constexpr hotmod_export_state_fn export_state_hook() noexcept {
  if constexpr (has_export_state<P>::value) return &export_state<P>;
  return nullptr;
}
template <class P>
constexpr hotmod_import_state_fn import_state_hook() noexcept {
  if constexpr (has_import_state<P>::value) return &import_state<P>;
  return nullptr;
}

template <class P>
constexpr hotmod_plugin_descriptor describe(const char *name, const char *version, const char *description,
                                            std::uint32_t flags, const hotmod_method_def *methods, std::size_t m,
                                            const hotmod_dependency_def *dependencies, std::size_t d) noexcept {
  return hotmod_plugin_descriptor{
      HOTMOD_PLUGIN_MAGIC_BLOCK,
      flags,
      name,
      version,
      description,
      dependencies,
      d,
      methods,
      m,
      &init<P>,
      activate_hook<P>(),
      deactivate_hook<P>(),
      &destroy<P>,
      export_state_hook<P>(),
      import_state_hook<P>(),
  };
}
}  // namespace detail

/** The descriptor of a plugin whose instance class is P: the hooks are P's
 * members (see the top of this file). Use it to initialise a static
 * constexpr descriptor, then HOTMOD_PLUGIN_ENTRY(that descriptor); or use
 * HOTMOD_CPP_PLUGIN, which does both. */
template <class P, std::size_t M, std::size_t D>
constexpr hotmod_plugin_descriptor describe(const char *name, const char *version, const char *description,
                                            std::uint32_t flags, const hotmod_method_def (&methods)[M],
                                            const hotmod_dependency_def (&dependencies)[D]) noexcept {
  return detail::describe<P>(name, version, description, flags, methods, M, dependencies, D);
}

/** describe() for a plugin without dependencies. */
template <class P, std::size_t M>
constexpr hotmod_plugin_descriptor describe(const char *name, const char *version, const char *description,
                                            std::uint32_t flags, const hotmod_method_def (&methods)[M]) noexcept {
  return detail::describe<P>(name, version, description, flags, methods, M, nullptr, 0);
}

}  // namespace hotmod

/** Declares the plugin: a constexpr descriptor built by hotmod::describe and
 * the entry symbol hotmod_plugin_v1. The last argument is the method table,
 * optionally followed by the dependency table. */
#define HOTMOD_CPP_PLUGIN(Type, name, version, description, flags, ...)                                    \
  static constexpr hotmod_plugin_descriptor hotmod_cpp_descriptor_ =                                       \
      ::hotmod::describe<Type>(name, version, description, flags, __VA_ARGS__);                            \
  HOTMOD_PLUGIN_ENTRY(hotmod_cpp_descriptor_)

#endif /* HOTMOD_PLUGIN_HPP */
