// HKDF-SHA256 (RFC 5869) on OpenSSL: how each tenant's key is derived from the master key.
// Byte-compatible with Python cryptography's HKDF(algorithm=SHA256(), length, salt, info).
// Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace ap::vault {

// Extract then expand: `length` bytes (at most 255 * 32). An absent salt is 32 zero bytes.
Result<std::string> hkdf_sha256(std::string_view ikm, std::optional<std::string_view> salt,
                                std::string_view info, size_t length);
// The extract step alone (the pseudorandom key), for test vectors.
Result<std::string> hkdf_sha256_extract(std::string_view ikm, std::optional<std::string_view> salt);

}  // namespace ap::vault
