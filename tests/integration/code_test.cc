// Code in runs on the real server: a `code` node computes part of a graph's state in the native
// sandbox, the ReAct agent calls the `code` tool, failures are the run's error, each execution
// is a "code.executed" audit event, and the tenant's sandbox policy and CPU-seconds quota hold.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

json user(const std::string& text) { return {{"messages", {{{"role", "user"}, {"content", text}}}}}; }

class Code : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server = new TestServer(); }
  static void TearDownTestSuite() {
    delete server;
    server = nullptr;
  }
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the sandbox's cgroups need root here (CI runs as root)";
  }
  static TestServer* server;
};
TestServer* Code::server = nullptr;

TEST_F(Code, ACodeNodeComputesPartOfTheState) {
  auto t = server->make_tenant("code-node");
  const json spec = {
      {"channels", {{"numbers", "last_value"}, {"total", "last_value"}, {"report", "last_value"}}},
      {"nodes",
       {{"sum", {{"kind", "code"}, {"language", "python"},
                 {"source", "import json, sys\nstate = json.load(sys.stdin)\nprint(json.dumps({'total': sum(state['numbers'])}))"}}},
        {"say", {{"kind", "code"}, {"language", "node"}, {"input", {{"from", "total"}}},
                 {"source", "let s = ''; process.stdin.on('data', d => s += d).on('end', () => "
                            "console.log(JSON.stringify({report: 'total is ' + JSON.parse(s)})))"}}}}},
      {"edges", json::array({json::array({"__start__", "sum"}), json::array({"sum", "say"}), json::array({"say", "__end__"})})}};
  auto put = server->call("PUT", "/v1/graphs/summer", t.key, spec.dump());
  ASSERT_EQ(put.status / 100, 2) << put.body;
  auto out = server->call_json("POST", "/runs/wait", t.key,
                               json{{"assistant_id", "summer"}, {"input", {{"numbers", {1, 2, 3, 4, 5}}}}}.dump());
  EXPECT_EQ(out["total"], 15) << out.dump();
  EXPECT_EQ(out["report"], "total is 15") << out.dump();
  // Each execution is audited (what ran, how it ended, what it used), and the run's cost counts them.
  json events;
  ASSERT_TRUE(eventually([&] {
    events = server->call_json("GET", "/v1/audit?kind=code.executed", t.key)["items"];
    return events.size() == 2;
  })) << events.dump();
  const json& p = events[0]["entry"]["payload"];
  EXPECT_EQ(p["outcome"], "exited");
  EXPECT_EQ(p["exit_code"], 0);
  EXPECT_EQ(p["backend"], "native");
  EXPECT_EQ(p["source_sha256"].get<std::string>().size(), 64u);
  EXPECT_TRUE(p.contains("cpu_ms"));
  EXPECT_TRUE(eventually([&] {
    auto cost = server->call_json("GET", "/v1/audit?kind=run.cost", t.key)["items"];
    return cost.size() == 1 && cost[0]["entry"]["payload"]["sandbox_runs"] == 2;
  }));
}

TEST_F(Code, AFailingScriptIsTheRunsErrorWithItsStderr) {
  auto t = server->make_tenant("code-fail");
  const json spec = {{"channels", {{"x", "last_value"}}},
                     {"nodes", {{"boom", {{"kind", "code"}, {"source", "import sys\nprint('bad input', file=sys.stderr)\nsys.exit(3)"}}}}},
                     {"edges", json::array({json::array({"__start__", "boom"}), json::array({"boom", "__end__"})})}};
  ASSERT_EQ(server->call("PUT", "/v1/graphs/boom", t.key, spec.dump()).status / 100, 2);
  auto out = server->call_json("POST", "/runs/wait", t.key, json{{"assistant_id", "boom"}, {"input", {{"x", 1}}}}.dump());
  ASSERT_TRUE(out.contains("__error__")) << out.dump();
  const std::string m = out["__error__"]["message"];
  EXPECT_NE(m.find("exited with 3"), std::string::npos) << m;
  EXPECT_NE(m.find("bad input"), std::string::npos) << m;
}

TEST_F(Code, TheReactAgentCallsTheCodeTool) {
  auto t = server->make_tenant("code-tool");
  const json route = {{"provider", "scripted"},
                      {"upstream_model", "s"},
                      {"script", json::array({{{"content", ""},
                                               {"tool_calls", {{{"name", "code"},
                                                                {"args", {{"language", "python"}, {"code", "print(sum(range(10)))"}}}}}}},
                                              "It is {{last}}"})}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/coder", t.key, route.dump()).status, 201);
  const json assistant = {{"graph_id", "builtin.react_agent"},
                          {"config", {{"configurable", {{"model", "coder"}, {"tools", {"code"}}}}}}};
  std::string id = server->call_json("POST", "/assistants", t.key, assistant.dump())["assistant_id"];
  auto out = server->call_json("POST", "/runs/wait", t.key, json{{"assistant_id", id}, {"input", user("sum 0..9")}}.dump());
  const json& m = out["messages"];
  ASSERT_EQ(m.size(), 4u) << out.dump(2);
  EXPECT_EQ(m[2]["type"], "tool");
  EXPECT_EQ(m[2]["content"], "45\n");
  EXPECT_EQ(m[2]["status"], "success");
}

TEST_F(Code, ACancelKillsTheSandboxAndItsCpuTimeStillCounts) {
  auto t = server->make_tenant("code-cancel");
  const json spin = {{"channels", {{"x", "last_value"}}},
                     {"nodes", {{"spin", {{"kind", "code"}, {"language", "shell"}, {"timeout_s", 60}, {"source", "while :; do :; done"}}}}},
                     {"edges", json::array({json::array({"__start__", "spin"}), json::array({"spin", "__end__"})})}};
  ASSERT_EQ(server->call("PUT", "/v1/graphs/spin", t.key, spin.dump()).status / 100, 2);
  const std::string thread = server->call_json("POST", "/threads", t.key, "{}")["thread_id"];
  const std::string run = server->call_json("POST", "/threads/" + thread + "/runs", t.key,
                                            json{{"assistant_id", "spin"}, {"input", {{"x", 1}}}}.dump())["run_id"];
  const std::string path = "/threads/" + thread + "/runs/" + run;
  ASSERT_TRUE(eventually([&] { return server->call_json("GET", path, t.key)["status"] == "running"; }));
  // Spinning in the sandbox (once started: "running" comes before the sandbox is up, and on a
  // busy machine the spinner gets only a share of a core).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(server->call("POST", path + "/cancel?wait=true", t.key).status / 100, 2);
  EXPECT_TRUE(eventually([&] { return server->call_json("GET", path, t.key)["status"] == "interrupted"; }));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3)) << "the sandbox was not killed";
  json events;
  ASSERT_TRUE(eventually([&] {
    events = server->call_json("GET", "/v1/audit?kind=code.executed", t.key)["items"];
    return events.size() == 1;
  })) << events.dump();
  EXPECT_EQ(events[0]["entry"]["payload"]["outcome"], "cancelled");
  EXPECT_GT(events[0]["entry"]["payload"]["cpu_ms"].get<int64_t>(), 100) << events.dump();  // a killed sandbox's CPU counts
}

TEST_F(Code, TheTenantsPolicyCapsLimitsAndTheCpuQuotaRunsOut) {
  auto t = server->make_tenant("code-policy");
  ASSERT_EQ(server->call("PUT", "/v1/tenants/" + t.id + "/limits", server->admin_token(),
                         json{{"sandbox_cpu_seconds_per_day", 1}, {"sandbox", {{"max_wall_s", 5}}}}.dump()).status,
            200);
  const json spin = {{"channels", {{"x", "last_value"}}},
                     {"nodes", {{"spin", {{"kind", "code"}, {"language", "shell"}, {"timeout_s", 60}, {"source", "while :; do :; done"}}}}},
                     {"edges", json::array({json::array({"__start__", "spin"}), json::array({"spin", "__end__"})})}};
  ASSERT_EQ(server->call("PUT", "/v1/graphs/spin", t.key, spin.dump()).status / 100, 2);
  // The spinner asks for 60 s; the quota has 1 s of CPU left today: it is stopped there.
  auto first = server->call_json("POST", "/runs/wait", t.key, json{{"assistant_id", "spin"}, {"input", {{"x", 1}}}}.dump());
  ASSERT_TRUE(first.contains("__error__")) << first.dump();
  EXPECT_NE(first["__error__"]["message"].get<std::string>().find("CPU-time limit"), std::string::npos) << first.dump();
  // What is left of the day's CPU time (the kill lands within ~100 ms of the limit) goes to the
  // next run as its whole CPU limit; once none is left, a run is refused before anything starts.
  std::string refused;
  for (int i = 0; i < 3 && refused.empty(); ++i) {
    auto next = server->call_json("POST", "/runs/wait", t.key, json{{"assistant_id", "spin"}, {"input", {{"x", 1}}}}.dump());
    ASSERT_TRUE(next.contains("__error__")) << next.dump();
    const std::string m = next["__error__"]["message"];
    if (m.find("sandbox CPU milliseconds per day") != std::string::npos) refused = m;
    else EXPECT_NE(m.find("CPU-time limit"), std::string::npos) << m;
  }
  EXPECT_FALSE(refused.empty()) << "the quota never refused a run";
  auto limits = server->call_json("GET", "/v1/limits", t.key);
  EXPECT_GE(limits["usage"]["sandbox_cpu_ms_per_day"]["used"].get<int64_t>(), 1000) << limits.dump();
  EXPECT_EQ(server->call("PUT", "/v1/tenants/" + t.id + "/limits", server->admin_token(),
                         json{{"sandbox", {{"teleport", true}}}}.dump()).status,
            400);
}

TEST_F(Code, EgressOnlyWhenTheTenantsPolicyAllowsAndOnlyToItsHosts) {
  auto t = server->make_tenant("code-egress");
  const std::string port = server->url().substr(server->url().rfind(':') + 1);
  const json spec = {
      {"channels", {{"fetched", "last_value"}}},
      {"nodes",
       {{"fetch", {{"kind", "code"}, {"network", true},
                   {"source", "import json, urllib.request, urllib.error\n"
                              "def get(url):\n"
                              "  try:\n"
                              "    return urllib.request.urlopen(url, timeout=10).status\n"
                              "  except urllib.error.HTTPError as e:\n"
                              "    return e.code\n"
                              "print(json.dumps({'fetched': [get('http://127.0.0.1:" + port + "/ok'), get('http://127.0.0.2:" + port + "/ok')]}))"}}}}},
      {"edges", json::array({json::array({"__start__", "fetch"}), json::array({"fetch", "__end__"})})}};
  ASSERT_EQ(server->call("PUT", "/v1/graphs/fetch", t.key, spec.dump()).status / 100, 2);
  // By default a tenant's code has no network at all.
  auto denied = server->call_json("POST", "/runs/wait", t.key, json{{"assistant_id", "fetch"}, {"input", json::object()}}.dump());
  ASSERT_TRUE(denied.contains("__error__")) << denied.dump();
  EXPECT_NE(denied["__error__"]["message"].get<std::string>().find("allows no network"), std::string::npos) << denied.dump();
  // A bad host list is refused and changes nothing.
  EXPECT_EQ(server->call("PUT", "/v1/tenants/" + t.id + "/limits", server->admin_token(),
                         json{{"sandbox", {{"egress", true}, {"egress_hosts", {"not a host!"}}}}}.dump()).status,
            400);
  // Allowed, to its own list only (within the operator's policy, which allows loopback here).
  ASSERT_EQ(server->call("PUT", "/v1/tenants/" + t.id + "/limits", server->admin_token(),
                         json{{"sandbox", {{"egress", true}, {"egress_hosts", {"127.0.0.1"}}}}}.dump()).status,
            200);
  auto out = server->call_json("POST", "/runs/wait", t.key, json{{"assistant_id", "fetch"}, {"input", json::object()}}.dump());
  EXPECT_EQ(out["fetched"], json::array({200, 403})) << out.dump();
  // The audit event says where the code went, and what was refused and why.
  json events;
  ASSERT_TRUE(eventually([&] {
    events = server->call_json("GET", "/v1/audit?kind=code.executed", t.key)["items"];
    return events.size() == 1;
  })) << events.dump();
  const json& egress = events[0]["entry"]["payload"]["egress"];
  ASSERT_EQ(egress.size(), 2u) << egress.dump();
  EXPECT_EQ(egress[0]["host"], "127.0.0.1");
  EXPECT_EQ(egress[0]["allowed"], true);
  EXPECT_GT(egress[0]["bytes_in"].get<int64_t>(), 0);
  EXPECT_EQ(egress[1]["host"], "127.0.0.2");
  EXPECT_EQ(egress[1]["allowed"], false);
  EXPECT_NE(egress[1]["reason"].get<std::string>().find("egress_hosts"), std::string::npos) << egress.dump();
}

}  // namespace
}  // namespace ap::testing
