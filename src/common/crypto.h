// Small cryptographic helpers on OpenSSL: randomness, SHA-256, encodings, constant-time compare.
// Thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ap {

// Fills `out` with cryptographically secure random bytes (OpenSSL RAND_bytes). Aborts if the
// system's random source fails: there is no safe way to continue without it.
void random_bytes(uint8_t* out, size_t n);
std::string random_token_base62(size_t chars);

using Sha256Digest = std::array<uint8_t, 32>;
Sha256Digest sha256(std::string_view data);
// SHA-256 of the concatenation of `parts`, without building it.
Sha256Digest sha256_parts(std::span<const std::string_view> parts);

std::string hex_encode(const uint8_t* data, size_t n);
inline std::string hex_encode(std::string_view s) {
  return hex_encode(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
std::optional<std::string> hex_decode(std::string_view hex);

std::string base64_encode(std::string_view data);
std::optional<std::string> base64_decode(std::string_view text);
// The URL-safe alphabet (RFC 4648 section 5: '-' and '_'), with '=' padding, as Python's
// base64.urlsafe_b64encode writes it. Decoding refuses the standard alphabet's '+' and '/'.
std::string base64url_encode(std::string_view data);
std::optional<std::string> base64url_decode(std::string_view text);

// Overwrites a string's bytes (OPENSSL_cleanse) and empties it: for key material in flight.
void wipe(std::string& s);

// Compares in time independent of where the inputs differ (CRYPTO_memcmp).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace ap
