// Fernet tokens (the Fernet spec; byte-compatible with Python cryptography's Fernet and
// MultiFernet): 0x80 | timestamp (big-endian u64) | IV (16) | AES-128-CBC(PKCS#7) | HMAC-SHA256.
// A token we write decrypts in Python and the reverse. Thread-safe (immutable after creation).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/secret.h"

namespace ap::vault {

class Fernet {
 public:
  // From the 32 raw key bytes: signing key = first 16, AES key = last 16.
  static Result<Fernet> from_raw(std::string_view key);
  // From Python's form of a key: URL-safe base64 of the 32 bytes.
  static Result<Fernet> from_base64(std::string_view key);

  // A token for `plaintext` made at `now` (Unix seconds), with a random IV.
  std::string encrypt(std::string_view plaintext, uint64_t now) const;
  // The same with a given IV (test vectors only: a reused IV breaks CBC's security).
  std::string encrypt_with_iv(std::string_view plaintext, uint64_t now, const std::array<uint8_t, 16>& iv) const;
  // The plaintext of `token`, checked as the spec says: version, then (with a TTL) age and the
  // 60 s clock-skew rule, then the HMAC (constant time), then the padding. Any failure is the
  // same InvalidArgument("invalid token") and says nothing about why.
  Result<SecretString> decrypt(std::string_view token, uint64_t now, std::optional<uint64_t> ttl = std::nullopt) const;
  // Decrypts and encrypts again under `to`, keeping the token's timestamp (MultiFernet.rotate).
  Result<std::string> rotate_to(const Fernet& to, std::string_view token) const;

  // The timestamp of a token, unverified (InvalidArgument if it is not shaped like one).
  static Result<uint64_t> timestamp(std::string_view token);

  Fernet(const Fernet&) = default;
  Fernet& operator=(const Fernet&) = default;

 private:
  Fernet() = default;
  Result<SecretString> open(const std::string& data, uint64_t ts, std::optional<std::pair<uint64_t, uint64_t>> time) const;
  SecretString signing_, encryption_;
};

// Several keys: encrypts with the first, decrypts with any (Python's MultiFernet).
class MultiFernet {
 public:
  explicit MultiFernet(std::vector<Fernet> keys);  // at least one
  std::string encrypt(std::string_view plaintext, uint64_t now) const { return keys_.front().encrypt(plaintext, now); }
  Result<SecretString> decrypt(std::string_view token, uint64_t now, std::optional<uint64_t> ttl = std::nullopt) const;
  // Re-encrypts under the first key, keeping the original timestamp.
  Result<std::string> rotate(std::string_view token) const;

 private:
  std::vector<Fernet> keys_;
};

}  // namespace ap::vault
