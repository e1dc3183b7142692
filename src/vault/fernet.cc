#include "vault/fernet.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>

#include "common/crypto.h"

namespace ap::vault {
namespace {

constexpr uint8_t kVersion = 0x80;
constexpr uint64_t kMaxClockSkew = 60;
constexpr size_t kHeader = 1 + 8 + 16;  // version, timestamp, IV
constexpr size_t kMac = 32;

Error invalid() { return Error::invalid_argument("invalid token"); }

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n);
  return std::string(reinterpret_cast<char*>(out), n);
}

// AES-128-CBC with PKCS#7 padding; nullopt when decryption or the padding fails.
std::optional<std::string> aes_cbc(bool encrypt, std::string_view key, std::string_view iv, std::string_view in) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  if (!ctx || EVP_CipherInit_ex(ctx.get(), EVP_aes_128_cbc(), nullptr,
                                reinterpret_cast<const unsigned char*>(key.data()),
                                reinterpret_cast<const unsigned char*>(iv.data()), encrypt ? 1 : 0) != 1)
    return std::nullopt;
  std::string out(in.size() + 16, '\0');
  int n = 0, tail = 0;
  if (EVP_CipherUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n,
                       reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + n, &tail) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return std::nullopt;
  }
  out.resize(static_cast<size_t>(n + tail));
  return out;
}

uint64_t read_be64(std::string_view b) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<uint8_t>(b[static_cast<size_t>(i)]);
  return v;
}

// The token's bytes, if it is URL-safe base64 of something that starts like a Fernet token.
Result<std::string> unverified(std::string_view token) {
  auto data = base64url_decode(token);
  if (!data || data->size() < 9 || static_cast<uint8_t>((*data)[0]) != kVersion) return invalid();
  return std::move(*data);
}

}  // namespace

Result<Fernet> Fernet::from_raw(std::string_view key) {
  if (key.size() != 32) return Error::invalid_argument("a Fernet key is 32 bytes");
  Fernet f;
  f.signing_ = SecretString(std::string(key.substr(0, 16)));
  f.encryption_ = SecretString(std::string(key.substr(16)));
  return f;
}

Result<Fernet> Fernet::from_base64(std::string_view key) {
  auto raw = base64url_decode(key);
  if (!raw || raw->size() != 32) return Error::invalid_argument("a Fernet key is 32 bytes of URL-safe base64");
  auto f = from_raw(*raw);
  OPENSSL_cleanse(raw->data(), raw->size());
  return f;
}

std::string Fernet::encrypt(std::string_view plaintext, uint64_t now) const {
  std::array<uint8_t, 16> iv;
  random_bytes(iv.data(), iv.size());
  return encrypt_with_iv(plaintext, now, iv);
}

std::string Fernet::encrypt_with_iv(std::string_view plaintext, uint64_t now,
                                    const std::array<uint8_t, 16>& iv) const {
  std::string_view ivs(reinterpret_cast<const char*>(iv.data()), iv.size());
  auto ciphertext = aes_cbc(true, encryption_.reveal(), ivs, plaintext);
  std::string parts;
  parts.reserve(kHeader + (ciphertext ? ciphertext->size() : 0) + kMac);
  parts += static_cast<char>(kVersion);
  for (int i = 7; i >= 0; --i) parts += static_cast<char>(now >> (8 * i) & 0xff);
  parts += ivs;
  parts += ciphertext.value_or("");  // AES-CBC encryption of valid input cannot fail
  parts += hmac_sha256(signing_.reveal(), parts);
  return base64url_encode(parts);
}

Result<uint64_t> Fernet::timestamp(std::string_view token) {
  AP_ASSIGN_OR_RETURN(auto data, unverified(token));
  return read_be64(std::string_view(data).substr(1, 8));
}

Result<SecretString> Fernet::open(const std::string& data, uint64_t ts,
                                  std::optional<std::pair<uint64_t, uint64_t>> time) const {
  if (time) {
    auto [ttl, now] = *time;
    if (ts + ttl < now) return invalid();
    if (now + kMaxClockSkew < ts) return invalid();
  }
  if (data.size() < kHeader + 16 + kMac || (data.size() - kHeader - kMac) % 16 != 0) return invalid();
  std::string_view all(data);
  std::string mac = hmac_sha256(signing_.reveal(), all.substr(0, all.size() - kMac));
  if (!constant_time_equal(mac, all.substr(all.size() - kMac))) return invalid();
  auto plain = aes_cbc(false, encryption_.reveal(), all.substr(9, 16), all.substr(kHeader, all.size() - kHeader - kMac));
  if (!plain) return invalid();
  return SecretString(std::move(*plain));
}

Result<SecretString> Fernet::decrypt(std::string_view token, uint64_t now, std::optional<uint64_t> ttl) const {
  AP_ASSIGN_OR_RETURN(auto data, unverified(token));
  uint64_t ts = read_be64(std::string_view(data).substr(1, 8));
  std::optional<std::pair<uint64_t, uint64_t>> time;
  if (ttl) time = std::make_pair(*ttl, now);
  return open(data, ts, time);
}

Result<std::string> Fernet::rotate_to(const Fernet& to, std::string_view token) const {
  AP_ASSIGN_OR_RETURN(auto data, unverified(token));
  uint64_t ts = read_be64(std::string_view(data).substr(1, 8));
  AP_ASSIGN_OR_RETURN(auto plain, open(data, ts, std::nullopt));
  return to.encrypt(plain.reveal(), ts);
}

MultiFernet::MultiFernet(std::vector<Fernet> keys) : keys_(std::move(keys)) {}

Result<SecretString> MultiFernet::decrypt(std::string_view token, uint64_t now, std::optional<uint64_t> ttl) const {
  for (const auto& k : keys_)
    if (auto p = k.decrypt(token, now, ttl)) return p;
  return invalid();
}

Result<std::string> MultiFernet::rotate(std::string_view token) const {
  for (const auto& k : keys_)
    if (auto t = k.rotate_to(keys_.front(), token)) return t;
  return invalid();
}

}  // namespace ap::vault
