// The binary's commands, run as a user runs them.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(Cli, HelpEverywhere) {
  for (std::vector<std::string> a :
       {std::vector<std::string>{"--help"}, {"dev", "--help"}, {"serve", "--help"},
        {"migrate", "--help"}, {"tenant", "create", "--help"}, {"key", "revoke", "--help"}}) {
    auto r = agentplane(a);
    EXPECT_EQ(r.code, 0) << a[0];
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << a[0] << r.out;
  }
}

TEST(Cli, ClearOneLineErrors) {
  auto r = agentplane({"serve"});
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  r = agentplane({"serve", "--database-url", "host=/nonexistent-dir user=nobody dbname=x",
                  "--listen", "127.0.0.1:0"});
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("cannot connect to PostgreSQL"), std::string::npos) << r.err;
  r = agentplane({"serve", "--database-url", Database::get().app_url(), "--listen", "nonsense"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("listen address"), std::string::npos) << r.err;
  // Serving as a role that bypasses row-level security is refused.
  r = agentplane({"serve", "--database-url", Database::get().superuser_url(), "--listen",
                  "127.0.0.1:0"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("row-level security"), std::string::npos) << r.err;
  TestServer busy(1);
  r = agentplane({"serve", "--database-url", Database::get().app_url(), "--listen",
                  "127.0.0.1:" + std::to_string(busy.server().port())});
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
  r = agentplane({"tenant", "list", "--url", "http://127.0.0.1:1"});
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
}

TEST(Cli, MigrateIsIdempotent) {
  auto r = agentplane({"migrate", "--database-url", Database::get().superuser_url()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("0 migration(s) applied"), std::string::npos) << r.out;
}

TEST(Cli, TenantAndKeyCommands) {
  TestServer s(1);
  std::vector<std::string> admin_env = {"AGENTPLANE_ADMIN_TOKEN=" + s.admin_token(),
                                        "AGENTPLANE_URL=" + s.url()};
  auto r = agentplane({"tenant", "create", "--name", "cli-co"}, admin_env);
  ASSERT_EQ(r.code, 0) << r.err;
  auto tenant = json::parse(r.out);
  std::string tid = tenant["tenant_id"];
  r = agentplane({"tenant", "list"}, admin_env);
  EXPECT_NE(r.out.find(tid), std::string::npos);
  r = agentplane({"key", "create", "--tenant", tid, "--name", "ops", "--scopes", "keys,read"},
                 admin_env);
  ASSERT_EQ(r.code, 0) << r.err;
  auto key = json::parse(r.out);
  EXPECT_EQ(key["scopes"], json::array({"keys", "read"}));
  std::vector<std::string> key_env = {"AGENTPLANE_API_KEY=" + key["key"].get<std::string>(),
                                      "AGENTPLANE_URL=" + s.url()};
  r = agentplane({"key", "list"}, key_env);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["items"].size(), 1u);
  EXPECT_EQ(r.out.find(key["key"].get<std::string>()), std::string::npos);  // never listed
  r = agentplane({"key", "create", "--name", "too-much", "--scopes", "models"}, key_env);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("403"), std::string::npos) << r.err;
  r = agentplane({"key", "revoke", key["key_id"].get<std::string>(), "--tenant", tid}, admin_env);
  EXPECT_EQ(r.code, 0) << r.err;
  r = agentplane({"key", "list"}, key_env);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("revoked"), std::string::npos) << r.err;
  r = agentplane({"tenant", "list"}, {"AGENTPLANE_URL=" + s.url()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("AGENTPLANE_ADMIN_TOKEN"), std::string::npos);
}

}  // namespace
}  // namespace ap::testing
