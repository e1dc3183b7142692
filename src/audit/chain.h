// Verifying a tenant's audit chain, and signed checkpoints of its head (docs/audit_format.md).
// Thread-safe: values and pure functions; a Signer is immutable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/secret.h"

namespace ap::audit {

// Feeds a chain's entries in order; stops believing at the first bad one.
class ChainVerifier {
 public:
  ChainVerifier() = default;
  // Verifies a range that starts after entry `after`, whose stored hash is `after_hash` (each
  // entry is checked against its predecessor's stored hash, so ranges verify independently and
  // a chain is intact when every range is and they meet).
  ChainVerifier(int64_t after, std::string after_hash) : size_(after), head_(std::move(after_hash)) {}
  // False from the first entry that does not follow: a gap in seq, or a hash that is not
  // SHA-256(previous hash || body). `problem()` then names the entry.
  bool add(int64_t seq, std::string_view body, std::string_view stored_hash);
  int64_t size() const { return size_; }
  const std::string& head() const { return head_; }  // raw 32 bytes
  // The stored hash of entry `seq` as it went by (kept only for the one asked for).
  void remember(int64_t seq) { remember_seq_ = seq; }
  const std::optional<std::string>& remembered() const { return remembered_; }
  void set_remembered(std::string hash) { remembered_ = std::move(hash); }
  const std::optional<int64_t>& bad_entry() const { return bad_; }
  const std::string& problem() const { return problem_; }

 private:
  int64_t size_ = 0;
  std::string head_ = std::string(32, '\0');
  std::optional<int64_t> bad_;
  std::string problem_;
  int64_t remember_seq_ = -1;
  std::optional<std::string> remembered_;
};

// A signed statement of a chain's head: {tenant, size, head (hex), time, key_version}.
struct Checkpoint {
  std::string tenant;
  int64_t size = 0;
  std::string head_hex;
  std::string time;
  int key_version = 0;
  std::string signature;  // base64 Ed25519 over signed_bytes()
  std::string signed_bytes() const;  // canonical JSON of the fields above but the signature
  std::string to_json() const;
  static Result<Checkpoint> from_json(std::string_view text);
};

// Ed25519 from a 32-byte seed (derived from the master key; see vault/keyring.h).
class Signer {
 public:
  static Result<Signer> from_seed(int version, const SecretString& seed);
  int version() const { return version_; }
  const std::string& public_key() const { return public_; }  // raw 32 bytes
  std::string sign(std::string_view bytes) const;          // raw 64 bytes

 private:
  int version_ = 0;
  SecretString seed_;
  std::string public_;
};

// A checkpoint of `tenant`'s head (`size` entries, head hash in hex) at `time`, signed.
Checkpoint sign_head(const Signer& signer, std::string tenant, int64_t size, std::string head_hex,
                     std::string time);

bool verify_signature(std::string_view public_key, std::string_view bytes, std::string_view signature);

// Checks a chain (already verified entry by entry) against a checkpoint: the entry at the
// checkpoint's size must exist and have its head. Names the entry when it does not.
Status check_against(const Checkpoint& cp, const ChainVerifier& chain);

}  // namespace ap::audit
