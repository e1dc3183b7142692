// A private, durable PostgreSQL 15 for a benchmark (initdb defaults: fsync on,
// synchronous_commit on), migrated, with one tenant; removed when the program ends.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "common/ids.h"
#include "store/local_postgres.h"
#include "store/migrate.h"
#include "store/sync_conn.h"

namespace ap::bench {

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  std::exit(1);
}

struct Db {
  std::string dir;
  std::unique_ptr<store::LocalPostgres> pg;
  std::unique_ptr<store::SyncConn> su;
  TenantId tenant;

  Db() {
    char tmpl[] = "/var/tmp/ap-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    std::filesystem::permissions(dir, std::filesystem::perms(0755));
    auto p = store::LocalPostgres::start({dir + "/pg", dir + "/s", dir + "/postgres.log", /*durable=*/true});
    if (!p) die(p.error().message);
    pg = std::move(*p);
    auto admin = store::SyncConn::connect(pg->conninfo("postgres", "postgres"));
    if (!admin || !(*admin)->exec_script("CREATE DATABASE agentplane")) die("cannot create the database");
    store::MigrateOptions mo;
    mo.database_url = pg->conninfo("postgres", "agentplane");
    if (auto r = store::migrate(mo); !r) die(r.error().message);
    su = std::move(*store::SyncConn::connect(pg->conninfo("postgres", "agentplane")));
    tenant = TenantId(Uuid::random_v4());
    if (!su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'bench')", {tenant.to_string()}))
      die("cannot create the tenant");
  }
  ~Db() {
    pg.reset();
    std::filesystem::remove_all(dir);
  }
  std::string app_url() const { return pg->conninfo("agentplane_app", "agentplane"); }
};

}  // namespace ap::bench
