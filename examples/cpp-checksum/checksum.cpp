/*
 * Example hotmod plugin in C++: module "cppchecksum", the C++ twin of the C
 * example examples/c-checksum, written with include/hotmod_plugin.hpp.
 *
 * Built by `make plugins` as C++17 (-Wall -Wextra -Wpedantic -Werror).
 *
 * Methods:
 *   length   bytes -> u64le   the input's length (reads no payload byte)
 *   fnv1a64  bytes -> u64le   FNV-1a 64-bit
 *   crc32    bytes -> u32le   CRC-32 (IEEE), table built at init
 *   upper    bytes -> bytes   ASCII upper case, written in place (host space
 *                             when it fits, else memory handed over)
 *   hex      bytes -> ascii   lowercase hex in a std::string handed to the
 *                             host without a copy (zero-copy path)
 *   version  () -> ascii      static plugin memory
 *   calls    () -> u64le      calls served by this module, across upgrades
 *   parse_u8 ascii -> u8      a decimal number 0-255; anything else is
 *                             invalid input (hotmod::invalid_input)
 */
#include <hotmod_plugin.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#ifndef CPPCHECKSUM_VERSION
#define CPPCHECKSUM_VERSION "1.0.0"
#endif

namespace {

class Checksum {
 public:
  explicit Checksum(hotmod::host host) : host_(host) {
    for (std::uint32_t i = 0; i < 256; i++) {
      std::uint32_t r = i;
      for (int k = 0; k < 8; k++) r = (r & 1) ? (r >> 1) ^ 0xEDB88320u : r >> 1;
      crc_table_[i] = r;
    }
    host_.log(HOTMOD_LOG_INFO, "cppchecksum " CPPCHECKSUM_VERSION " ready");
  }

  std::uint64_t count() noexcept { return calls_.fetch_add(1, std::memory_order_relaxed) + 1; }

  std::uint32_t crc32(hotmod::bytes_view in) const noexcept {
    std::uint32_t crc = 0xFFFFFFFFu;
    for (std::uint8_t b : in) crc = crc_table_[(crc ^ b) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
  }

  void export_state(hotmod::output &out) {
    std::uint64_t n = calls_.load();
    hotmod::byte_span b = out.alloc(8);
    for (int i = 0; i < 8; i++) b[i] = static_cast<std::uint8_t>(n >> (8 * i));
  }

  void import_state(hotmod::bytes_view state) {
    if (state.size() != 8) {
      throw std::runtime_error("cppchecksum: expected 8 bytes of state, found " + std::to_string(state.size()));
    }
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | state[static_cast<std::size_t>(i)];
    calls_.store(n);
  }

 private:
  hotmod::host host_;
  std::atomic<std::uint64_t> calls_{0};
  std::array<std::uint32_t, 256> crc_table_{};
};

template <class T>
void put_le(hotmod::output &out, T v) {
  hotmod::byte_span b = out.alloc(sizeof v);
  for (std::size_t i = 0; i < sizeof v; i++) b[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

void length(Checksum &c, hotmod::bytes_view in, hotmod::output &out) {
  c.count();
  put_le<std::uint64_t>(out, in.size());
}

void fnv1a64(Checksum &c, hotmod::bytes_view in, hotmod::output &out) {
  c.count();
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::uint8_t b : in) h = (h ^ b) * 0x100000001b3ull;
  put_le(out, h);
}

void crc32(Checksum &c, hotmod::bytes_view in, hotmod::output &out) {
  c.count();
  put_le(out, c.crc32(in));
}

void upper(Checksum &c, hotmod::bytes_view in, hotmod::output &out) {
  c.count();
  hotmod::byte_span dst = out.alloc(in.size());
  for (std::size_t i = 0; i < in.size(); i++) {
    std::uint8_t b = in[i];
    dst[i] = (b >= 'a' && b <= 'z') ? static_cast<std::uint8_t>(b - ('a' - 'A')) : b;
  }
}

void hex(Checksum &c, hotmod::bytes_view in, hotmod::output &out) {
  c.count();
  static constexpr char digits[] = "0123456789abcdef";
  auto s = std::make_unique<std::string>(in.size() * 2, '\0');
  for (std::size_t i = 0; i < in.size(); i++) {
    (*s)[2 * i] = digits[in[i] >> 4];
    (*s)[2 * i + 1] = digits[in[i] & 15];
  }
  out.give(std::move(s));
}

void version(Checksum &c, hotmod::bytes_view, hotmod::output &out) {
  c.count();
  static constexpr std::string_view v = CPPCHECKSUM_VERSION;
  out.give_static(v);
}

void calls(Checksum &c, hotmod::bytes_view, hotmod::output &out) { put_le(out, c.count()); }

void parse_u8(Checksum &c, hotmod::bytes_view in, hotmod::output &out) {
  c.count();
  std::string_view text = in.as_string_view();
  unsigned v = 0;
  if (text.empty() || text.size() > 3) throw hotmod::invalid_input("parse_u8: expected 1 to 3 decimal digits");
  for (char ch : text) {
    if (ch < '0' || ch > '9') throw hotmod::invalid_input("parse_u8: expected decimal digits, found '" + std::string(text) + "'");
    v = v * 10 + static_cast<unsigned>(ch - '0');
  }
  if (v > 255) throw hotmod::invalid_input("parse_u8: expected at most 255, found " + std::to_string(v));
  put_le(out, static_cast<std::uint8_t>(v));
}

constexpr hotmod_method_def methods[] = {
    hotmod::method<length>("length", "bytes -> u64le"),
    hotmod::method<fnv1a64>("fnv1a64", "bytes -> u64le"),
    hotmod::method<crc32>("crc32", "bytes -> u32le"),
    hotmod::method<upper>("upper", "bytes -> bytes"),
    hotmod::method<hex>("hex", "bytes -> ascii (plugin memory)"),
    hotmod::method<version>("version", "() -> ascii"),
    hotmod::method<calls>("calls", "() -> u64le"),
    hotmod::method<parse_u8>("parse_u8", "ascii -> u8"),
};

}  // namespace

HOTMOD_CPP_PLUGIN(Checksum, "cppchecksum", CPPCHECKSUM_VERSION, "Checksums and hex encoding (C++ example)",
                  HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD, methods)
