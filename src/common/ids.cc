#include "common/ids.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <memory>

#include <cstring>

#include "common/crypto.h"

namespace ap {
namespace {

// Randomness for ids, drawn from the system's CSPRNG a block at a time per thread (RAND_bytes
// costs a lock and a DRBG call each time; ids are made on every request). Never used for keys
// or tokens, which take random_bytes directly.
void id_random(uint8_t* out, size_t n) {
  thread_local std::array<uint8_t, 4096> block;
  thread_local size_t used = block.size();
  if (used + n > block.size()) {
    random_bytes(block.data(), block.size());
    used = 0;
  }
  std::memcpy(out, block.data() + used, n);
  used += n;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<Uuid> Uuid::parse(std::string_view t) {
  if (t.size() != 36) return std::nullopt;
  std::array<uint8_t, 16> b{};
  size_t j = 0;
  for (size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (t[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    int hi = hex_value(t[i]), lo = hex_value(t[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    b[j++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return Uuid(b);
}

Uuid Uuid::random_v4() {
  std::array<uint8_t, 16> b{};
  random_bytes(b.data(), b.size());
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return Uuid(b);
}

Uuid Uuid::v7(int64_t unix_ms) {
  std::array<uint8_t, 16> b{};
  id_random(b.data(), b.size());
  for (int i = 0; i < 6; ++i) b[i] = static_cast<uint8_t>(unix_ms >> (40 - 8 * i));
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  return Uuid(b);
}

Uuid Uuid::v5(const Uuid& ns, std::string_view name) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr);
  EVP_DigestUpdate(ctx.get(), ns.bytes().data(), ns.bytes().size());
  EVP_DigestUpdate(ctx.get(), name.data(), name.size());
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::array<uint8_t, 16> b{};
  std::copy(md, md + 16, b.begin());
  b[6] = (b[6] & 0x0f) | 0x50;
  b[8] = (b[8] & 0x3f) | 0x80;
  return Uuid(b);
}

std::string Uuid::to_string() const {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[36];
  size_t j = 0;
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) buf[j++] = '-';
    buf[j++] = kHex[bytes_[i] >> 4];
    buf[j++] = kHex[bytes_[i] & 15];
  }
  return std::string(buf, 36);
}

bool Uuid::is_nil() const {
  for (auto v : bytes_)
    if (v) return false;
  return true;
}

size_t UuidHash::operator()(const Uuid& u) const noexcept {
  uint64_t a, b;
  std::memcpy(&a, u.bytes().data(), 8);
  std::memcpy(&b, u.bytes().data() + 8, 8);
  return std::hash<uint64_t>()(a ^ (b * 0x9e3779b97f4a7c15ULL));
}

}  // namespace ap
