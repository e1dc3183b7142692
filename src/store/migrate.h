// Database roles and versioned schema migrations (SQL files in store/migrations, compiled in).
// Blocks: run from the command line (`agentplane migrate`, `dev`), never on a server thread.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/embedded.h"
#include "common/result.h"
#include "common/secret.h"

namespace ap::store {

// The three roles (see docs/database.md):
inline constexpr const char* kOwnerRole = "agentplane_owner";    // owns the schema; migrations
inline constexpr const char* kAppRole = "agentplane_app";        // the server; RLS applies
inline constexpr const char* kSystemRole = "agentplane_system";  // owns cross-tenant functions
inline constexpr const char* kSchema = "agentplane";

struct MigrateOptions {
  // A role that may create roles: a superuser, or the database owner with CREATEROLE (then a
  // superuser must have created agentplane_system with BYPASSRLS once).
  std::string database_url;
  // Sets the app role's password (sent as a SCRAM verifier, never in clear text).
  std::optional<SecretString> app_password;
};

struct MigrateReport {
  std::vector<std::string> applied;  // file names applied by this call
  int version = 0;                   // schema version after the call
};

// Creates the roles if missing, checks their attributes, and applies every migration not yet
// applied, each in its own transaction, under an advisory lock (concurrent calls are safe).
// Idempotent. Unavailable if the database cannot be reached; FailedPrecondition if a role has
// unsafe attributes or cannot be created with the given rights.
Result<MigrateReport> migrate(const MigrateOptions& options);

// The compiled-in migration files, sorted by name (NNNN_name.sql).
std::span<const EmbeddedFile> migration_files();

}  // namespace ap::store
