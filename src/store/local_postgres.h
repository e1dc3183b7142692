// A private PostgreSQL server started from the system's binaries (for `agentplane dev` and for
// tests): initdb on first use, then `postgres` as a child process listening only on a unix
// socket. When the caller is root, the server runs as the `postgres` system user, since
// PostgreSQL refuses to run as root. Blocks (start and stop wait for the server).
// Not thread-safe; start and stop it from the main thread (the child is tied to that thread's
// lifetime via PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/result.h"

namespace ap::store {

struct LocalPostgresOptions {
  std::string cluster_dir;  // PGDATA; created by initdb when empty or missing
  std::string socket_dir;   // keep short: unix socket paths are limited to ~107 bytes
  std::string log_file;     // the server's stderr; empty: <cluster_dir>/../postgres.log
  bool durable = true;      // false (tests): fsync off, initdb --no-sync
};

class LocalPostgres {
 public:
  // Initialises the cluster if needed, removes a stale postmaster.pid left by a crash, starts the
  // server and waits until it accepts connections (30 s). FailedPrecondition with a one-line
  // reason when binaries are missing, the folder is unusable, or another server runs on it.
  static Result<std::unique_ptr<LocalPostgres>> start(const LocalPostgresOptions& options);
  ~LocalPostgres();

  // libpq key=value connection string for `user` on database `dbname`, over the unix socket.
  std::string conninfo(const std::string& user, const std::string& dbname) const;
  // The bootstrap superuser's name.
  static constexpr const char* kSuperuser = "postgres";

  // Fast shutdown (SIGINT), waiting up to 30 s. Idempotent.
  Status stop();
  pid_t pid() const { return pid_; }

 private:
  LocalPostgres() = default;
  LocalPostgresOptions options_;
  pid_t pid_ = -1;
};

// The directory holding initdb and postgres (newest version >= 15 under /usr/lib/postgresql, or
// $AP_PG_BINDIR). FailedPrecondition naming the package to install if none.
Result<std::string> find_postgres_bindir();

}  // namespace ap::store
