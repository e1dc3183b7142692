// Operator commands that work on the database and the master key file directly (no server):
// `vault rotate|retire|rewrap`, `audit verify` and `tenant purge`. Blocking. Output on stdout; errors are one
// line on stderr; exit 0 on success, 1 on failure (for verify: the chain is bad), 2 on usage.
#pragma once

#include <string>

namespace ap::app::cli {

int vault_rotate(const std::string& key_file);
int vault_retire(const std::string& key_file, const std::string& database_url, int version);
int vault_rewrap(const std::string& key_file, const std::string& database_url, const std::string& tenant);
// Verifies one tenant's chain (or every tenant's), optionally against a saved checkpoint whose
// signature is checked with the master key file's audit keys when one is given.
int audit_verify(const std::string& database_url, const std::string& tenant, const std::string& checkpoint_file,
                 const std::string& key_file);

// Runs the deleted-tenant sweep once (auth::purge_tenants) and prints what it did.
int tenant_purge(const std::string& database_url);

}  // namespace ap::app::cli
