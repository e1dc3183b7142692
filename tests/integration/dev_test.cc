// `agentplane dev` as a person runs it: first start, restart on the same data, clean stop on
// SIGTERM, a stale postmaster.pid after a crash.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "common/crypto.h"
#include "tests/integration/fixture.h"

extern char** environ;

namespace ap::testing {
namespace {
namespace fs = std::filesystem;

class Dev {
 public:
  explicit Dev(const std::string& data_dir) : dir_(data_dir) {
    old_url_ = read().value("url", "");
    std::string exe = std::getenv("AP_BINARY") ? std::getenv("AP_BINARY") : "./agentplane";
    std::vector<std::string> args = {exe, "dev", "--data-dir", dir_, "--listen", "127.0.0.1:0"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    std::string out = fs::path(dir_).parent_path().string() + "/dev.out";
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    EXPECT_EQ(posix_spawn(&pid_, exe.c_str(), &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  json read() const {
    std::ifstream in(dir_ + "/dev.json");
    if (!in) return json::object();
    json j = json::parse(in, nullptr, false);
    return j.is_object() ? j : json::object();
  }
  // dev.json is rewritten with the new URL (port 0: a new port) once the server serves.
  json wait_ready() {
    json j;
    bool ok = eventually(
        [&] {
          j = read();
          return j.contains("demo_api_key") && j.value("url", "") != old_url_;
        },
        std::chrono::seconds(60));
    EXPECT_TRUE(ok) << "dev did not start";
    return j;
  }
  int stop(int sig = SIGTERM) {
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  std::string dir_, old_url_;
  pid_t pid_ = -1;
};

std::string pg_cluster_of(const std::string& data_dir) {
  auto id = sha256(data_dir);
  if (geteuid() == 0) return "/var/lib/agentplane/dev-" + hex_encode(id.data(), 4) + "/pg";
  return data_dir + "/pg";
}

TEST(Dev, StartsRestartsAndStopsCleanly) {
  std::string root = Database::get().temp_dir() + "/devhome";
  fs::create_directories(root);
  std::string data = root + "/data";
  std::string cluster = pg_cluster_of(data);

  Dev first(data);
  json j = first.wait_ready();
  struct stat st{};
  ASSERT_EQ(stat((data + "/dev.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto ok = net::http_request(j["url"], "GET", "/ok");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  auto keys = net::http_request(j["url"], "GET", "/v1/keys",
                                {{"x-api-key", j["demo_api_key"].get<std::string>()}});
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->status, 200);
  // The demo agent: the scripted model calls the calculator, then streams its answer.
  auto run = agentplane({"run", "--assistant", "demo", "--stream", "--data-dir", data, "(2 + 3) * 7"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find("calls calculator({\"expression\":\"(2 + 3) * 7\"})"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("tool calculator: 35"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("ai: (2 + 3) * 7 = 35."), std::string::npos) << run.out;
  auto chat = agentplane({"run", "--assistant", "demo", "--data-dir", data, "hello"});
  EXPECT_EQ(chat.code, 0) << chat.err;
  EXPECT_NE(chat.out.find("only do arithmetic"), std::string::npos) << chat.out;
  // The coder agent runs the user's Python expression in the sandbox (cgroups need root).
  if (geteuid() == 0) {
    auto code = agentplane({"run", "--assistant", "coder", "--stream", "--data-dir", data, "sum(i * i for i in range(10))"});
    EXPECT_EQ(code.code, 0) << code.err;
    EXPECT_NE(code.out.find("tool code: 285"), std::string::npos) << code.out;
    EXPECT_NE(code.out.find("is 285"), std::string::npos) << code.out;
  }
  EXPECT_EQ(first.stop(SIGTERM), 0);
  EXPECT_FALSE(fs::exists(cluster + "/postmaster.pid")) << "PostgreSQL did not stop";

  // A crash leaves a postmaster.pid naming a dead process: the next start copes.
  { std::ofstream(cluster + "/postmaster.pid") << "999999\n" << cluster << "\n"; }
  Dev second(data);
  json j2 = second.wait_ready();
  EXPECT_EQ(j2["demo_tenant_id"], j["demo_tenant_id"]);  // the data was reused
  EXPECT_EQ(j2["demo_api_key"], j["demo_api_key"]);
  auto again = net::http_request(j2["url"], "GET", "/v1/keys",
                                 {{"x-api-key", j2["demo_api_key"].get<std::string>()}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(second.stop(SIGINT), 0);
  EXPECT_FALSE(fs::exists(cluster + "/postmaster.pid"));

  // Secret: the banner and dev.json are the only places the key appears; the log has none.
  std::ifstream log(data + "/agentplane.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"event\":\"request\""), std::string::npos);
  EXPECT_EQ(text.find(j["demo_api_key"].get<std::string>()), std::string::npos);
  EXPECT_EQ(text.find(j["admin_token"].get<std::string>()), std::string::npos);
  if (geteuid() == 0) fs::remove_all(fs::path(cluster).parent_path());
}

}  // namespace
}  // namespace ap::testing
