// The master key ring: versions of the 32-byte master key, from which every tenant's Fernet key
// (HKDF-SHA256, no salt, info = the tenant id's text) and the audit signing key are derived.
// Never stored in the database. Sources: AGENTPLANE_MASTER_KEY (base64 of 32 bytes: version 1
// only) or a key file, one version per line, "<version> <base64 key>[ retired]", 0600.
// Thread-safe (immutable once loaded).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "common/secret.h"
#include "vault/fernet.h"

namespace ap::vault {

class Keyring {
 public:
  static Result<Keyring> from_base64(std::string_view key);  // one version (1)
  static Result<Keyring> load_file(const std::string& path);
  // A new key file with one random version (dev; 0600). AlreadyExists if the file exists.
  static Status create_file(const std::string& path);
  // Adds a new random version to the file; it becomes the current one. Returns its number.
  static Result<int> rotate_file(const std::string& path);
  // Marks `version` retired in the file (it can no longer be current; rewrap first).
  static Status retire_in_file(const std::string& path, int version);

  int current() const { return current_; }
  std::vector<int> versions() const;  // every version still loaded, oldest first
  bool has(int version) const { return keys_.count(version) > 0; }
  // The tenant's Fernet key under master-key `version`.
  Result<Fernet> tenant_key(const TenantId& tenant, int version) const;
  // The seed of the audit signing key (Ed25519) under `version`.
  Result<SecretString> audit_seed(int version) const;

 private:
  struct Version {
    SecretString key;
    bool retired = false;
  };
  std::map<int, Version> keys_;
  int current_ = 0;
};

}  // namespace ap::vault
