#include "store/migrate.h"

#include <libpq-fe.h>

#include <cstdlib>

#include "store/sync_conn.h"
#include "telemetry/log.h"

namespace ap::store {
namespace migrations_embedded {
std::span<const EmbeddedFile> embedded_files();
}

std::span<const EmbeddedFile> migration_files() { return migrations_embedded::embedded_files(); }

namespace {

constexpr std::string_view kBootstrap = R"sql(
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agentplane_owner') THEN
    CREATE ROLE agentplane_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agentplane_app') THEN
    CREATE ROLE agentplane_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agentplane_system') THEN
    CREATE ROLE agentplane_system NOLOGIN BYPASSRLS;
  END IF;
END $$;
GRANT agentplane_owner TO CURRENT_USER;
GRANT agentplane_system TO agentplane_owner;
CREATE SCHEMA IF NOT EXISTS agentplane AUTHORIZATION agentplane_owner;
GRANT USAGE ON SCHEMA agentplane TO agentplane_app, agentplane_system;
-- Needed only so that functions can be given to agentplane_system (ALTER FUNCTION ... OWNER).
GRANT CREATE ON SCHEMA agentplane TO agentplane_system;
ALTER ROLE agentplane_app SET search_path = agentplane;
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO agentplane_app', current_database());
END $$;
CREATE TABLE IF NOT EXISTS agentplane.schema_migrations (
  version int PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE agentplane.schema_migrations OWNER TO agentplane_owner;
GRANT SELECT ON agentplane.schema_migrations TO agentplane_app;
)sql";

// The app role must be subject to RLS; the system role must bypass it (it owns the functions
// that cross tenants on purpose).
Status check_roles(SyncConn& db) {
  AP_ASSIGN_OR_RETURN(
      auto rows,
      db.exec("SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, "
              "pg_has_role(oid, 'agentplane_owner', 'MEMBER') OR "
              "pg_has_role(oid, 'agentplane_system', 'MEMBER') FROM pg_roles "
              "WHERE rolname IN ('agentplane_app','agentplane_system')"));
  for (int i = 0; i < rows.size(); ++i) {
    std::string_view name = rows.get(i, 0);
    bool super = rows.get(i, 1) == "t", bypass = rows.get(i, 2) == "t";
    bool createrole = rows.get(i, 3) == "t", member = rows.get(i, 4) == "t";
    if (name == kAppRole && (super || bypass || createrole || member))
      return Error::failed_precondition(
          "role agentplane_app is SUPERUSER, BYPASSRLS, CREATEROLE or a member of the owner or "
          "system role; row-level security would not hold");
    if (name == kSystemRole && !bypass)
      return Error::failed_precondition("role agentplane_system lacks BYPASSRLS");
  }
  if (rows.size() != 2) return Error::failed_precondition("roles missing after bootstrap");
  return ok_status();
}

Status set_app_password(SyncConn& db, const std::string& url, const SecretString& password) {
  // Secret: hash client-side (SCRAM verifier) so the clear password never reaches the server
  // or its statement log.
  PGconn* c = PQconnectdb(url.c_str());
  if (!c || PQstatus(c) != CONNECTION_OK) {
    if (c) PQfinish(c);
    return Error::unavailable("cannot connect to PostgreSQL");
  }
  std::string pw(password.reveal());
  char* verifier = PQencryptPasswordConn(c, pw.c_str(), kAppRole, "scram-sha-256");
  std::fill(pw.begin(), pw.end(), '\0');
  PQfinish(c);
  if (!verifier) return Error::internal("cannot hash the app role's password");
  std::string sql = std::string("ALTER ROLE agentplane_app PASSWORD ") + quote_literal(verifier);
  PQfreemem(verifier);
  return db.exec_script(sql);
}

}  // namespace

Result<MigrateReport> migrate(const MigrateOptions& options) {
  AP_ASSIGN_OR_RETURN(auto db, SyncConn::connect(options.database_url));
  // One migrator at a time, across processes.
  AP_RETURN_IF_ERROR(db->exec("SELECT pg_advisory_lock(7411001)"));
  if (auto st = db->exec_script(kBootstrap); !st) {
    return Error::failed_precondition("cannot create the agentplane roles and schema (" +
                                      st.error().message +
                                      "); run migrate as a superuser, or as the database owner "
                                      "with CREATEROLE after a superuser created "
                                      "agentplane_system with BYPASSRLS");
  }
  AP_RETURN_IF_ERROR(check_roles(*db));
  if (options.app_password)
    AP_RETURN_IF_ERROR(set_app_password(*db, options.database_url, *options.app_password));

  MigrateReport report;
  AP_ASSIGN_OR_RETURN(auto done, db->exec("SELECT version FROM agentplane.schema_migrations"));
  std::vector<int> applied;
  for (int i = 0; i < done.size(); ++i) applied.push_back(std::atoi(done.get(i, 0).data()));
  for (const auto& f : migration_files()) {
    int version = std::atoi(std::string(f.name.substr(0, 4)).c_str());
    report.version = std::max(report.version, version);
    if (std::find(applied.begin(), applied.end(), version) != applied.end()) continue;
    std::string script = "BEGIN;\nSET LOCAL ROLE agentplane_owner;\nSET LOCAL search_path = "
                         "agentplane;\n";
    script += f.content;
    script += "\n;INSERT INTO agentplane.schema_migrations(version, name) VALUES (" +
              std::to_string(version) + ", " + quote_literal(f.name) + ");\nCOMMIT;";
    if (auto st = db->exec_script(script); !st) {
      (void)db->exec_script("ROLLBACK");
      return Error{st.error().code, "migration " + std::string(f.name) + " failed: " +
                                        st.error().message};
    }
    telemetry::log_info("migration_applied", {{"file", f.name}});
    report.applied.emplace_back(f.name);
  }
  (void)db->exec("SELECT pg_advisory_unlock(7411001)");
  return report;
}

}  // namespace ap::store
