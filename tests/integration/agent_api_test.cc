// The LangGraph agent API through HTTP against the real server, its worker and PostgreSQL:
// graphs, assistants, threads, runs (wait, SSE stream, interrupt and resume, double-texting),
// the store, and two tenants that never see each other's objects. The LangGraph JS SDK drives
// the same API in tests/e2e.
#include <gtest/gtest.h>

#include <condition_variable>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <sys/socket.h>

#include <mutex>
#include <thread>

#include <sstream>

#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

// A 3-node linear graph and a graph that asks a human.
const json kLinear = json::parse(R"({
  "channels": {"count": "last_value", "log": "append"},
  "nodes": {
    "a": {"kind": "set", "values": {"count": {"increment": "count"}, "log": {"template": "a{{count}}"}}},
    "b": {"kind": "set", "values": {"count": {"increment": "count"}, "log": {"template": "b{{count}}"}}},
    "c": {"kind": "set", "values": {"count": {"increment": "count"}, "log": {"template": "c{{count}}"}}}},
  "edges": [["__start__", "a"], ["a", "b"], ["b", "c"], ["c", "__end__"]]})");
const json kAsk = json::parse(R"({
  "channels": {"count": "last_value", "answer": "last_value"},
  "nodes": {
    "prep": {"kind": "set", "values": {"count": {"increment": "count"}}},
    "ask": {"kind": "interrupt", "payload": {"template": "approve {{count}}?"}, "resume_to": "answer"}},
  "edges": [["__start__", "prep"], ["prep", "ask"], ["ask", "__end__"]]})");

class AgentApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server = new TestServer();
    a = new TestServer::Tenant(server->make_tenant("agents-a"));
    b = new TestServer::Tenant(server->make_tenant("agents-b"));
    for (const auto& [id, spec] : {std::pair{"linear", kLinear}, std::pair{"ask", kAsk}})
      ASSERT_EQ(server->call("PUT", std::string("/v1/graphs/") + id, a->key, spec.dump()).status, 201);
  }
  static void TearDownTestSuite() {
    delete a;
    delete b;
    delete server;
  }
  static json post(const std::string& path, const std::string& key, const json& body, int status = 200) {
    return server->call_json("POST", path, key, body.dump(), status);
  }
  static std::string new_thread(const std::string& key) { return post("/threads", key, json::object())["thread_id"]; }
  // The sum of a metric's samples on /metrics (0 when absent).
  static double metric(const std::string& name) {
    auto r = server->call("GET", "/metrics");
    double sum = 0;
    std::istringstream lines(r.body);
    for (std::string l; std::getline(lines, l);)
      if (l.rfind(name, 0) == 0 && l.size() > name.size() && (l[name.size()] == ' ' || l[name.size()] == '{'))
        sum += std::stod(l.substr(l.rfind(' ') + 1));
    return sum;
  }

  static TestServer* server;
  static TestServer::Tenant *a, *b;
};
TestServer* AgentApi::server = nullptr;
TestServer::Tenant* AgentApi::a = nullptr;
TestServer::Tenant* AgentApi::b = nullptr;

// An HTTP server on loopback that records the requests it gets and answers each path's status
// (`statuses`, else 200; 0: holds the answer until release(), then 200): the other end of runs'
// webhooks.
class Receiver {
 public:
  explicit Receiver(std::map<std::string, int> statuses) : statuses_(std::move(statuses)) {
    port_ = acceptor_.local_endpoint().port();
    accepting_ = std::thread([this] {
      for (;;) {
        auto sock = std::make_shared<boost::asio::ip::tcp::socket>(ioc_);
        boost::system::error_code ec;
        acceptor_.accept(*sock, ec);
        std::lock_guard lock(mu_);
        if (ec || stop_) return;
        sockets_.push_back(sock);
        serving_.emplace_back([this, sock] { serve(*sock); });
      }
    });
  }
  ~Receiver() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      released_.notify_all();
      for (auto& s : sockets_) ::shutdown(s->native_handle(), SHUT_RDWR);  // out of a blocking read
    }
    boost::system::error_code ec;
    boost::asio::ip::tcp::socket poke(ioc_);
    poke.connect(acceptor_.local_endpoint(), ec);  // out of accept()
    accepting_.join();
    for (auto& t : serving_) t.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  void release() {
    std::lock_guard lock(mu_);
    held_ = false;
    released_.notify_all();
  }
  struct Request {
    std::string target, content_type, body;
  };
  // The requests so far for paths starting with `prefix`, once there are at least `n` (or after
  // `patience`).
  std::vector<Request> wait_for(const std::string& prefix, size_t n, std::chrono::milliseconds patience = std::chrono::seconds(15)) {
    std::vector<Request> out;
    for (auto until = std::chrono::steady_clock::now() + patience;;) {
      out.clear();
      {
        std::lock_guard lock(mu_);
        for (const auto& r : got_)
          if (r.target.rfind(prefix, 0) == 0) out.push_back(r);
      }
      if (out.size() >= n || std::chrono::steady_clock::now() > until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return out;
  }

 private:
  void serve(boost::asio::ip::tcp::socket& sock) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buf;
    for (;;) {  // keep-alive: every request on the connection
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(sock, buf, req, ec);
      if (ec) return;
      const std::string target(req.target());
      int status = 200;
      for (const auto& [prefix, st] : statuses_)
        if (target.rfind(prefix, 0) == 0) status = st;
      {
        std::unique_lock lock(mu_);
        got_.push_back({target, std::string(req[http::field::content_type]), req.body()});
        if (status == 0) {
          released_.wait(lock, [this] { return !held_ || stop_; });
          if (stop_) return;
          status = 200;
        }
      }
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(sock, res, ec);
      if (ec || !req.keep_alive()) return;
    }
  }

  std::map<std::string, int> statuses_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_{ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}};
  uint16_t port_ = 0;
  std::mutex mu_;
  std::condition_variable released_;
  bool stop_ = false, held_ = true;
  std::vector<std::shared_ptr<boost::asio::ip::tcp::socket>> sockets_;
  std::vector<std::thread> serving_;
  std::vector<Request> got_;
  std::thread accepting_;
};

TEST_F(AgentApi, GraphsAreValidatedAndBuiltInsReserved) {
  auto bad = server->call("PUT", "/v1/graphs/broken", a->key,
                          R"({"channels": {}, "nodes": {"x": {"kind": "nope"}}, "edges": [["__start__", "y"]]})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("nope"), std::string::npos) << bad.body;
  EXPECT_EQ(server->call("PUT", "/v1/graphs/builtin.mine", a->key, kLinear.dump()).status, 400);
  EXPECT_EQ(server->call("PUT", "/v1/graphs/linear", a->key, kLinear.dump()).status, 200);  // an update
  auto list = server->call_json("GET", "/v1/graphs", a->key);
  std::set<std::string> ids;
  for (const auto& g : list["items"]) ids.insert(g["graph_id"]);
  EXPECT_TRUE(ids.count("linear") && ids.count("builtin.echo") && ids.count("builtin.react_agent"));
  // Tenant B sees the built-ins, not A's graphs.
  EXPECT_EQ(server->call("GET", "/v1/graphs/linear", b->key).status, 404);
  EXPECT_EQ(server->call("GET", "/v1/graphs/builtin.echo", b->key).status, 200);
  // The ReAct template needs a model: without one in the assistant's config, the run says so.
  auto react = server->call("POST", "/runs/wait", b->key, R"({"assistant_id": "builtin.react_agent", "input": {"messages": ["hi"]}})");
  EXPECT_EQ(react.status, 200);
  EXPECT_NE(react.body.find("config.configurable.model"), std::string::npos) << react.body;
}

TEST_F(AgentApi, AssistantsAreVersioned) {
  auto created = post("/assistants", a->key, {{"graph_id", "linear"}, {"name", "v1"}, {"metadata", {{"team", "x"}}}});
  std::string id = created["assistant_id"];
  EXPECT_EQ(created["version"], 1);
  EXPECT_EQ(server->call("POST", "/assistants", a->key, json{{"graph_id", "linear"}, {"assistant_id", id}}.dump()).status, 409);
  EXPECT_EQ(post("/assistants", a->key, {{"graph_id", "linear"}, {"assistant_id", id}, {"if_exists", "do_nothing"}})["name"], "v1");
  EXPECT_EQ(server->call("POST", "/assistants", a->key, R"({"graph_id": "missing"})").status, 404);
  auto updated = server->call_json("PATCH", "/assistants/" + id, a->key, json{{"name", "v2"}, {"metadata", {{"k", 1}}}}.dump());
  EXPECT_EQ(updated["version"], 2);
  EXPECT_EQ(updated["metadata"], (json{{"team", "x"}, {"k", 1}}));
  EXPECT_EQ(post("/assistants/" + id + "/versions", a->key, json::object()).size(), 2u);
  EXPECT_EQ(post("/assistants/" + id + "/latest", a->key, {{"version", 1}})["name"], "v1");
  EXPECT_EQ(post("/assistants/search", a->key, {{"metadata", {{"team", "x"}}}}).size(), 1u);
  EXPECT_EQ(post("/assistants/count", a->key, {{"graph_id", "linear"}}), 2);  // with the default assistant
  auto graph = server->call_json("GET", "/assistants/" + id + "/graph", a->key);
  EXPECT_EQ(graph["nodes"].size(), 5u);
  EXPECT_EQ(server->call_json("GET", "/assistants/linear/schemas", a->key)["graph_id"], "linear");
  // Isolation: B can neither see nor change A's assistant.
  EXPECT_EQ(server->call("GET", "/assistants/" + id, b->key).status, 404);
  EXPECT_EQ(server->call("PATCH", "/assistants/" + id, b->key, "{}").status, 404);
  EXPECT_EQ(server->call("DELETE", "/assistants/" + id, b->key).status, 404);
  for (const auto& other : post("/assistants/search", b->key, json::object())) EXPECT_NE(other["assistant_id"], id);
  EXPECT_EQ(server->call("DELETE", "/assistants/" + id, a->key).status, 204);
}

TEST_F(AgentApi, RunsWaitStreamAndKeepState) {
  std::string t = new_thread(a->key);
  auto done = post("/threads/" + t + "/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 0}}}});
  EXPECT_EQ(done["count"], 3);
  EXPECT_EQ(done["log"], (json{"a0", "b1", "c2"}));  // each node reads the state its step began with
  auto thread = server->call_json("GET", "/threads/" + t, a->key);
  EXPECT_EQ(thread["status"], "idle");
  EXPECT_EQ(thread["values"]["count"], 3);
  EXPECT_EQ(thread["metadata"]["graph_id"], "linear");
  // A second run continues from the thread's state; the stream has LangGraph's SSE shape.
  auto s = server->call("POST", "/threads/" + t + "/runs/stream", a->key,
                        json{{"assistant_id", "linear"}, {"input", {{"count", 10}}}, {"stream_mode", {"values", "updates"}}}.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.body.rfind("event: metadata\ndata: {", 0), 0u) << s.body;
  EXPECT_NE(s.body.find("\nid: 0\n\n"), std::string::npos);
  EXPECT_NE(s.body.find("event: updates\ndata: {\"a\":"), std::string::npos) << s.body;
  EXPECT_NE(s.body.find("\"count\":13"), std::string::npos) << s.body;
  auto state = server->call_json("GET", "/threads/" + t + "/state", a->key);
  EXPECT_EQ(state["values"]["count"], 13);
  EXPECT_EQ(state["next"].size(), 0u);
  auto history = post("/threads/" + t + "/history", a->key, {{"limit", 3}});
  ASSERT_EQ(history.size(), 3u);
  auto older = post("/threads/" + t + "/history", a->key,
                    {{"limit", 1}, {"before", {{"configurable", {{"checkpoint_id", history[0]["checkpoint"]["checkpoint_id"]}}}}}});
  EXPECT_EQ(older[0]["checkpoint"]["checkpoint_id"], history[1]["checkpoint"]["checkpoint_id"]);
  auto runs = server->call_json("GET", "/threads/" + t + "/runs", a->key);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0]["status"], "success");
  // Stateless: a temporary thread, gone afterwards.
  EXPECT_EQ(post("/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 100}}}})["count"], 103);
  // Search by values (stored as json text): a state holding U+0000, which jsonb cannot hold,
  // matches no values filter and does not fail the search. (A run's input cannot hold it: 400.)
  std::string nul = new_thread(a->key);
  const json nul_values = {{"count", 0}, {"log", {std::string("a\0b", 3)}}};
  auto refused = server->call("POST", "/threads/" + nul + "/runs/wait", a->key,
                              json{{"assistant_id", "linear"}, {"input", nul_values}}.dump());
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(post("/threads/" + nul + "/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 0}}}})["count"], 3);
  auto updated = server->call("POST", "/threads/" + nul + "/state", a->key, json{{"values", nul_values}}.dump());
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(server->call_json("GET", "/threads/" + nul + "/state", a->key)["values"]["log"].back(), std::string("a\0b", 3));
  auto found = server->call("POST", "/threads/search", a->key, json{{"values", {{"count", 13}}}}.dump());
  ASSERT_EQ(found.status, 200) << found.body;
  ASSERT_EQ(json::parse(found.body).size(), 1u) << found.body;
  EXPECT_EQ(json::parse(found.body)[0]["thread_id"], t);
  EXPECT_EQ(post("/threads/search", a->key, {{"values", {{"count", 3}}}}).size(), 0u);
  // Isolation: B cannot read A's thread, state, history or runs, nor run on it.
  for (const auto& path : {"/threads/" + t, "/threads/" + t + "/state", "/threads/" + t + "/runs"})
    EXPECT_EQ(server->call("GET", path, b->key).status, 404) << path;
  EXPECT_EQ(server->call("POST", "/threads/" + t + "/history", b->key, "{}").status, 404);
  EXPECT_EQ(server->call("POST", "/threads/" + t + "/runs/wait", b->key, R"({"assistant_id": "builtin.echo"})").status, 404);
  EXPECT_EQ(post("/threads/search", b->key, json::object()).size(), 0u);
}

TEST_F(AgentApi, NewRunsStartOnTheLocalWorkerDelayedOnesAreQueued) {
  // An idle worker in the same process takes a new run at once (no queue round): stateless and
  // on a thread alike, with the same results.
  const double local0 = metric("agentplane_runs_started_locally_total");
  const double claimed0 = metric("agentplane_runs_claimed_total");
  EXPECT_EQ(post("/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 1}}}})["count"], 4);
  std::string t = new_thread(a->key);
  EXPECT_EQ(post("/threads/" + t + "/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 5}}}})["count"], 8);
  EXPECT_EQ(metric("agentplane_runs_started_locally_total"), local0 + 2);
  EXPECT_EQ(metric("agentplane_runs_claimed_total"), claimed0);
  // A run due later waits in the queue and is claimed then.
  std::string t2 = new_thread(a->key);
  auto later = post("/threads/" + t2 + "/runs", a->key,
                    {{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"after_seconds", 0.3}});
  EXPECT_EQ(later["status"], "pending");
  auto joined = server->call_json("GET", "/threads/" + t2 + "/runs/" + later["run_id"].get<std::string>() + "/join", a->key);
  EXPECT_EQ(joined["count"], 3) << joined.dump();
  // Joined after its end, a thread run answers the thread's values (where its final state is
  // stored), as LangGraph's join does: after a later run, the later state.
  const std::string join_later = "/threads/" + t2 + "/runs/" + later["run_id"].get<std::string>() + "/join";
  EXPECT_EQ(server->call_json("GET", join_later, a->key)["count"], 3);
  EXPECT_EQ(post("/threads/" + t2 + "/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 10}}}})["count"], 13);
  EXPECT_EQ(server->call_json("GET", join_later, a->key)["count"], 13);
  EXPECT_EQ(metric("agentplane_runs_claimed_total"), claimed0 + 1);
  EXPECT_EQ(metric("agentplane_runs_started_locally_total"), local0 + 3);
}

TEST_F(AgentApi, InterruptResumeAndDoubleTexting) {
  std::string t = new_thread(a->key);
  auto paused = post("/threads/" + t + "/runs/wait", a->key, {{"assistant_id", "ask"}, {"input", {{"count", 1}}}});
  ASSERT_TRUE(paused.contains("__interrupt__")) << paused.dump();
  EXPECT_EQ(paused["__interrupt__"][0]["value"], "approve 2?");
  EXPECT_EQ(server->call_json("GET", "/threads/" + t, a->key)["status"], "interrupted");
  auto state = server->call_json("GET", "/threads/" + t + "/state", a->key);
  EXPECT_EQ(state["next"], json::array({"ask"}));
  auto resumed = post("/threads/" + t + "/runs/wait", a->key, {{"assistant_id", "ask"}, {"command", {{"resume", "yes"}}}});
  EXPECT_EQ(resumed["answer"], "yes");
  EXPECT_EQ(server->call_json("GET", "/threads/" + t, a->key)["status"], "idle");
  // The decision log has the interrupt and the human's answer.
  ASSERT_TRUE(eventually([&] {
    auto d = server->call_json("GET", "/v1/audit/decisions?limit=1000", a->key);
    int seen = 0;
    for (const auto& i : d["items"])
      if (i["kind"] == "run.interrupted" || i["kind"] == "run.resumed") ++seen;
    return seen >= 2;
  }));
  // Double-texting: a delayed run keeps the thread busy; reject refuses, enqueue waits its turn.
  auto first = post("/threads/" + t + "/runs", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"after_seconds", 1}});
  auto rejected = server->call("POST", "/threads/" + t + "/runs", a->key, json{{"assistant_id", "linear"}}.dump());
  EXPECT_EQ(rejected.status, 409) << rejected.body;
  auto queued = post("/threads/" + t + "/runs", a->key,
                     {{"assistant_id", "linear"}, {"input", {{"count", 10}}}, {"multitask_strategy", "enqueue"}});
  auto joined = server->call_json("GET", "/threads/" + t + "/runs/" + queued["run_id"].get<std::string>() + "/join", a->key);
  EXPECT_EQ(joined["count"], 13);
  EXPECT_EQ(server->call_json("GET", "/threads/" + t + "/runs/" + first["run_id"].get<std::string>(), a->key)["status"],
            "success");
  // Cancelling a pending run stops it at once.
  auto later = post("/threads/" + t + "/runs", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"after_seconds", 30}});
  std::string later_id = later["run_id"];
  EXPECT_EQ(server->call("POST", "/threads/" + t + "/runs/" + later_id + "/cancel", b->key).status, 404);
  EXPECT_EQ(server->call("POST", "/threads/" + t + "/runs/" + later_id + "/cancel?wait=1", a->key).status, 204);
  EXPECT_EQ(server->call_json("GET", "/threads/" + t + "/runs/" + later_id, a->key)["status"], "interrupted");
}

// A run a stopping worker handed back to the queue keeps the checkpoints it wrote (its next
// attempt goes on from them); rolling it back while it waits deletes them with it, and the
// thread is as before the run: here interrupted, as its state says.
// A webhook queued with a run's end goes out from the queue whichever worker ran the run (here:
// one queued as by a worker that died right after committing the end), also for a run its claim
// fails after its workers were lost; 5xx is tried again up to the attempts, then given up and
// audited; another 4xx is given up at once. (tests/e2e: the
// payload, a retry that succeeds, the egress policy, the URL checks.)
TEST_F(AgentApi, WebhooksGoOutFromTheQueueAndAreRetriedThenGivenUp) {
  Receiver rx({{"/down", 503}, {"/gone", 404}});
  const double sent0 = metric("agentplane_webhooks_total");
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su) << su.error().message;
  ASSERT_TRUE((*su)->exec("INSERT INTO agentplane.webhook_deliveries (tenant_id, id, run_id, url, payload) "
                          "VALUES ($1, gen_random_uuid(), gen_random_uuid(), $2, '{\"status\":\"success\"}')",
                          store::params(a->id, rx.url("/orphan?token=t3"))));
  auto orphan = rx.wait_for("/orphan", 1);
  ASSERT_EQ(orphan.size(), 1u);
  EXPECT_EQ(orphan[0].content_type, "application/json");
  auto body = json::parse(orphan[0].body);  // the payload, with the time it was sent
  EXPECT_EQ(body["status"], "success");
  EXPECT_TRUE(body["webhook_sent_at"].is_string()) << orphan[0].body;

  // A run whose workers were all lost (its lease ran out on its last attempt): its claim fails it
  // (RunAttemptsExceeded) and queues its webhook (migration 0025).
  ASSERT_TRUE((*su)->exec("INSERT INTO agentplane.runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, "
                          "status, attempt, lease_owner, lease_expires) VALUES ($1, gen_random_uuid(), gen_random_uuid(), "
                          "gen_random_uuid(), jsonb_build_object('webhook', $2::text), 'test', 'running', 3, 'gone', "
                          "now() - interval '1 minute')",
                          store::params(a->id, rx.url("/run-lost"))));
  auto lost = rx.wait_for("/run-lost", 1);
  ASSERT_EQ(lost.size(), 1u);
  auto lost_body = json::parse(lost[0].body);
  EXPECT_EQ(lost_body["status"], "error");
  EXPECT_EQ(lost_body["error"]["error"], "RunAttemptsExceeded");
  EXPECT_TRUE(lost_body["values"].is_null());
  EXPECT_TRUE(lost_body["webhook_sent_at"].is_string());

  // One whose sender went away during its last attempt (its lease ran out): given up, not POSTed.
  ASSERT_TRUE((*su)->exec("INSERT INTO agentplane.webhook_deliveries (tenant_id, id, run_id, url, payload, attempts) "
                          "VALUES ($1, gen_random_uuid(), gen_random_uuid(), $2, '{}', 5)",
                          store::params(a->id, rx.url("/lost"))));

  // Always 503: 5 POSTs (the first, then after 0.1, 0.3, 0.9 and 2.7 s here), then given up.
  auto down = post("/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"webhook", rx.url("/down")}});
  EXPECT_EQ(down["count"], 3);
  EXPECT_EQ(rx.wait_for("/down", 5).size(), 5u);
  // 404: given up at once.
  post("/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"webhook", rx.url("/gone?token=t4")}});
  EXPECT_EQ(rx.wait_for("/gone", 1).size(), 1u);
  json failed;
  for (int i = 0; i < 100 && failed.size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    failed = server->call_json("GET", "/v1/audit?kind=run.webhook_failed", a->key)["items"];
  }
  ASSERT_EQ(failed.size(), 3u) << failed.dump();
  std::map<std::string, json> by_error;
  for (const auto& f : failed) by_error[f["entry"]["payload"]["error"].get<std::string>()] = f["entry"]["payload"];
  ASSERT_EQ(by_error.count("answered HTTP 503"), 1u) << failed.dump();
  ASSERT_EQ(by_error.count("answered HTTP 404"), 1u) << failed.dump();
  ASSERT_EQ(by_error.count("no answer within the lease"), 1u) << failed.dump();
  EXPECT_EQ(by_error["answered HTTP 503"]["attempts"], 5);
  EXPECT_EQ(by_error["no answer within the lease"]["attempts"], 5);
  EXPECT_EQ(rx.wait_for("/lost", 1, std::chrono::milliseconds(100)).size(), 0u);
  EXPECT_EQ(by_error["answered HTTP 404"]["attempts"], 1);
  EXPECT_EQ(by_error["answered HTTP 404"]["host"], "127.0.0.1");
  EXPECT_EQ(failed.dump().find("t4"), std::string::npos) << "no URL query in the audit log";
  EXPECT_EQ(rx.wait_for("/down", 6, std::chrono::seconds(2)).size(), 5u) << "no POST after giving up";
  // Nothing is left queued; every attempt is counted.
  auto left = (*su)->exec("SELECT count(*) FROM agentplane.webhook_deliveries WHERE tenant_id = $1", store::params(a->id));
  ASSERT_TRUE(left);
  EXPECT_EQ(left->get(0, 0), "0");
  EXPECT_GE(metric("agentplane_webhooks_total") - sent0, 9);
}

// A dead worker's runs (their leases ran out) are all taken again in one go, also on a quiet
// queue, whose once-a-second round offers a single slot: finding one makes the next round take
// the rest (migration 0029). At one a second these six would need six seconds.
TEST_F(AgentApi, ADeadWorkersRunsAreAllReclaimedAtOnce) {
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su) << su.error().message;
  const std::string owner = "gone-" + Uuid::random_v4().to_string();
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE((*su)->exec("INSERT INTO agentplane.runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, "
                            "status, attempt, lease_owner, lease_expires) VALUES ($1, gen_random_uuid(), gen_random_uuid(), "
                            "gen_random_uuid(), '{}', 'test', 'running', 1, $2, now() - interval '1 minute')",
                            store::params(a->id, owner)));
  auto left = [&] {
    auto r = (*su)->exec("SELECT count(*) FROM agentplane.runs WHERE lease_owner = $1", store::params(owner));
    return r ? std::stoi(std::string(r->get(0, 0))) : -1;
  };
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return left() == 0; }, std::chrono::seconds(10)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3)) << "reclaimed one at a time";
}

// One tenant's webhooks to a receiver that does not answer take at most their share of a
// worker's senders (a quarter: 4 of 16); another tenant's still go out meanwhile, and the stuck
// ones all go once the receiver answers.
TEST_F(AgentApi, OneTenantsStuckWebhooksDoNotHoldUpAnothers) {
  Receiver rx({{"/stuck", 0}});
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su) << su.error().message;
  auto queue = [&](const std::string& tenant, const std::string& url, int n) {
    ASSERT_TRUE((*su)->exec("INSERT INTO agentplane.webhook_deliveries (tenant_id, id, run_id, url, payload) "
                            "SELECT $1, gen_random_uuid(), gen_random_uuid(), $2, '{}' FROM generate_series(1, $3::int)",
                            store::params(tenant, url, std::to_string(n))));
  };
  queue(a->id, rx.url("/stuck"), 20);  // more than all 16 senders
  EXPECT_EQ(rx.wait_for("/stuck", 4).size(), 4u);
  queue(b->id, rx.url("/other"), 1);
  EXPECT_EQ(rx.wait_for("/other", 1).size(), 1u) << "held up by the other tenant's stuck webhooks";
  EXPECT_EQ(rx.wait_for("/stuck", 5, std::chrono::milliseconds(500)).size(), 4u) << "more than the tenant's share";
  rx.release();
  EXPECT_EQ(rx.wait_for("/stuck", 20).size(), 20u);
  for (int i = 0; i < 100; ++i) {
    auto left = (*su)->exec("SELECT count(*) FROM agentplane.webhook_deliveries WHERE tenant_id IN ($1, $2)",
                            store::params(a->id, b->id));
    ASSERT_TRUE(left);
    if (left->get(0, 0) == "0") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto left = (*su)->exec("SELECT count(*) FROM agentplane.webhook_deliveries WHERE tenant_id IN ($1, $2)",
                          store::params(a->id, b->id));
  EXPECT_EQ(left->get(0, 0), "0");
}

TEST_F(AgentApi, RollingBackARequeuedRunDeletesWhatItWrote) {
  std::string t = new_thread(a->key);
  auto paused = post("/threads/" + t + "/runs/wait", a->key, {{"assistant_id", "ask"}, {"input", {{"count", 1}}}});
  ASSERT_TRUE(paused.contains("__interrupt__")) << paused.dump();
  auto before = server->call_json("GET", "/threads/" + t + "/state", a->key);
  auto done = post("/threads/" + t + "/runs/wait", a->key, {{"assistant_id", "ask"}, {"command", {{"resume", "yes"}}}});
  ASSERT_EQ(done["answer"], "yes");
  auto runs = server->call_json("GET", "/threads/" + t + "/runs", a->key);
  std::string run = runs[0]["run_id"];  // newest first: the resume
  // As if its worker had stopped before its end: queued again, not due yet.
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  ASSERT_TRUE((*su)->exec("UPDATE agentplane.runs SET status = 'pending', run_after = now() + interval '1 hour' "
                          "WHERE run_id = $1",
                          {run}));
  ASSERT_TRUE((*su)->exec("UPDATE agentplane.threads SET status = 'busy', interrupts = $2::jsonb WHERE thread_id = $1",
                          {t, json{{before["tasks"][0]["id"].get<std::string>(), before["tasks"][0]["interrupts"]}}.dump()}));
  EXPECT_EQ(server->call("POST", "/threads/" + t + "/runs/" + run + "/cancel?action=rollback", a->key).status, 202);
  EXPECT_EQ(server->call("GET", "/threads/" + t + "/runs/" + run, a->key).status, 404);
  auto after = server->call_json("GET", "/threads/" + t + "/state", a->key);
  EXPECT_EQ(after["checkpoint"], before["checkpoint"]) << "the rolled-back run's checkpoints are gone";
  EXPECT_EQ(after["values"], before["values"]);
  EXPECT_EQ(server->call_json("GET", "/threads/" + t, a->key)["status"], "interrupted");
  auto blobs = (*su)->exec("SELECT count(*) FROM agentplane.checkpoint_blobs b WHERE b.thread_id = $1 AND NOT EXISTS "
                           "(SELECT 1 FROM agentplane.checkpoints c WHERE c.tenant_id = b.tenant_id AND "
                           "c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns AND c.checkpoint_id = b.ref)",
                           {t});
  ASSERT_TRUE(blobs);
  EXPECT_EQ(blobs->get(0, 0), "0") << "no blob of a deleted checkpoint is left";
}

TEST_F(AgentApi, StoreIsPerTenant) {
  ASSERT_EQ(server->call("PUT", "/store/items", a->key,
                         R"({"namespace": ["users", "u1"], "key": "prefs", "value": {"theme": "dark"}})").status, 204);
  EXPECT_EQ(server->call_json("GET", "/store/items?namespace=users.u1&key=prefs", a->key)["value"]["theme"], "dark");
  EXPECT_TRUE(server->call_json("GET", "/store/items?namespace=users.u1&key=prefs", b->key).is_null());
  EXPECT_EQ(post("/store/items/search", a->key, {{"namespace_prefix", {"users"}}})["items"].size(), 1u);
  EXPECT_EQ(post("/store/items/search", b->key, {{"namespace_prefix", {"users"}}})["items"].size(), 0u);
  EXPECT_EQ(post("/store/namespaces", a->key, {{"max_depth", 1}})["namespaces"], json::array({json::array({"users"})}));
  EXPECT_EQ(server->call("PUT", "/store/items", a->key, R"({"namespace": ["a.b"], "key": "k", "value": {}})").status, 400);
  EXPECT_EQ(server->call("DELETE", "/store/items", a->key, R"({"namespace": ["users", "u1"], "key": "prefs"})").status, 204);
  EXPECT_TRUE(server->call_json("GET", "/store/items?namespace=users.u1&key=prefs", a->key).is_null());
}

TEST_F(AgentApi, ThreadsFromSuperstepsAndBadSuperstepsChangeNothing) {
  const std::string id = Uuid::random_v4().to_string();
  json body = {{"thread_id", id}, {"metadata", {{"graph_id", "linear"}}},
               {"supersteps", {{{"updates", {{{"values", {{"count", 1}}}, {"as_node", "nope"}}}}}}}};
  EXPECT_EQ(server->call("POST", "/threads", a->key, body.dump()).status, 400);
  EXPECT_EQ(server->call("GET", "/threads/" + id, a->key).status, 404) << "the failed create left nothing";
  EXPECT_EQ(server->call("POST", "/threads", a->key, R"({"supersteps": [{"updates": 3}]})").status, 400);
  EXPECT_EQ(server->call("POST", "/threads", a->key,
                         R"({"supersteps": [{"updates": [{"values": {"count": 1}, "as_node": "a"}]}]})").status, 400)
      << "no graph_id";
  body["supersteps"] = {{{"updates", {{{"values", {{"count", 5}}}, {"as_node", "a"}}}}},
                        {{"updates", {{{"values", {{"count", 7}}}, {"as_node", "b"}}}}}};
  json t = post("/threads", a->key, body);
  auto state = server->call_json("GET", "/threads/" + id + "/state", a->key);
  EXPECT_EQ(state["values"]["count"], 7);
  EXPECT_EQ(state["next"], json::array({"c"}));
  EXPECT_EQ(post("/threads/" + id + "/runs/wait", a->key, {{"assistant_id", "linear"}})["count"], 8);
}

TEST_F(AgentApi, ExpiredThreadsAreSwept) {
  json t = post("/threads", a->key, {{"ttl", {{"strategy", "delete"}, {"ttl", 0.001}}}});
  const std::string id = t["thread_id"];
  post("/threads/" + id + "/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 0}}}});
  const std::string kept = new_thread(a->key);
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  // The TTL counts from the last update; the run just touched the thread: expire it now.
  ASSERT_TRUE((*su)->exec("UPDATE agentplane.threads SET expires_at = now() - interval '1 second' WHERE thread_id = $1", {id}));
  auto swept = (*su)->exec("SELECT agentplane.sweep_run_data(interval '10 minutes', interval '1 day')");
  ASSERT_TRUE(swept) << swept.error().message;
  EXPECT_EQ(server->call("GET", "/threads/" + id, a->key).status, 404);
  auto left = (*su)->exec("SELECT (SELECT count(*) FROM agentplane.checkpoints WHERE thread_id = $1) + "
                          "(SELECT count(*) FROM agentplane.runs WHERE thread_id = $1::uuid)", {id});
  ASSERT_TRUE(left);
  EXPECT_EQ(left->get(0, 0), "0") << "its checkpoints and runs went with it";
  EXPECT_EQ(server->call("GET", "/threads/" + kept, a->key).status, 200) << "threads without a TTL stay";
}

TEST_F(AgentApi, EndedStatelessRunsAreSweptAfterTheirGrace) {
  // A stateless run's temporary thread goes when the run ends; its run row stays for a while
  // (a join may read it), then the sweep deletes it. Rows the sweep must keep: a run that ended
  // recently, a resumable one (kept as long as its event log), one whose thread was kept.
  auto run = [&](const json& extra) {
    json body = {{"assistant_id", "linear"}, {"input", {{"count", 0}}}};
    body.update(extra);
    json r = post("/runs", a->key, body);
    const std::string run_id = r["run_id"], thread_id = r["thread_id"];
    EXPECT_EQ(server->call_json("GET", "/threads/" + thread_id + "/runs/" + run_id + "/join", a->key)["count"], 3);
    return run_id;
  };
  const std::string old_run = run(json::object()), recent = run(json::object()),
                    resumable = run({{"stream_resumable", true}}), kept = run({{"on_completion", "keep"}});
  // A run cancelled while still queued never reaches a worker: the cancel deletes its thread.
  json queued = post("/runs", a->key, {{"assistant_id", "linear"}, {"after_seconds", 600}});
  const std::string queued_run = queued["run_id"], queued_thread = queued["thread_id"];
  ASSERT_EQ(server->call("POST", "/threads/" + queued_thread + "/runs/" + queued_run + "/cancel", a->key).status, 202);
  EXPECT_EQ(server->call("GET", "/threads/" + queued_thread, a->key).status, 404);
  EXPECT_EQ(server->call_json("GET", "/threads/" + queued_thread + "/runs/" + queued_run, a->key)["status"], "interrupted");
  // A run that ended without its worker deleting the thread (out of attempts after its
  // workers were lost: claim_runs sets it to error), as if that had happened.
  json lost = post("/runs", a->key, {{"assistant_id", "linear"}, {"after_seconds", 600}});
  const std::string lost_run = lost["run_id"], lost_thread = lost["thread_id"];
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  ASSERT_TRUE((*su)->exec("UPDATE agentplane.runs SET status = 'error' WHERE run_id = $1::uuid", {lost_run}));
  auto exists = [&](const std::string& run_id) {
    auto r = (*su)->exec("SELECT count(*) FROM agentplane.runs WHERE run_id = $1::uuid", {run_id});
    return r && r->get(0, 0) == "1";
  };
  ASSERT_TRUE(exists(old_run)) << "kept for a while after its end";
  for (const auto& id : {old_run, resumable, kept, queued_run, lost_run})
    ASSERT_TRUE((*su)->exec("UPDATE agentplane.runs SET updated_at = now() - interval '11 minutes' WHERE run_id = $1::uuid", {id}));
  // In batches of at most p_limit (the server calls again while a batch is full).
  auto sweep = [&](int limit) {
    auto r = (*su)->exec("SELECT agentplane.sweep_stateless_runs(interval '10 minutes', interval '1 day', $1::int)",
                         {std::to_string(limit)});
    return r ? std::stoll(std::string(r->get(0, 0))) : -1;
  };
  EXPECT_EQ(sweep(1), 1);
  EXPECT_EQ(sweep(10), 2) << "the last run whose thread is gone, then the lost run's thread";
  EXPECT_EQ(server->call("GET", "/threads/" + lost_thread, a->key).status, 404);
  EXPECT_EQ(sweep(10), 1) << "then the lost run";
  EXPECT_EQ(sweep(10), 0);
  EXPECT_FALSE(exists(old_run));
  EXPECT_FALSE(exists(lost_run));
  EXPECT_TRUE(exists(recent));
  EXPECT_TRUE(exists(resumable)) << "a resumable stream's run stays as long as its log";
  EXPECT_TRUE(exists(kept)) << "on_completion=keep: the run belongs to its thread";
  EXPECT_FALSE(exists(queued_run));
  // The sweep can find them by an index, not by reading the table.
  ASSERT_TRUE((*su)->exec("SET enable_seqscan = off"));
  auto plan = (*su)->exec(
      "EXPLAIN SELECT 1 FROM agentplane.runs r WHERE r.status NOT IN ('pending', 'running') AND "
      "(r.kwargs -> 'temporary') = 'true'::jsonb AND r.updated_at < now() - interval '10 minutes'");
  ASSERT_TRUE(plan);
  EXPECT_NE(plan->get(0, 0).find("runs_temporary_ended"), std::string::npos) << plan->get(0, 0);
}

TEST_F(AgentApi, CronsAreValidatedAndFire) {
  // Bad input: a clear 400 or 404, and nothing stored.
  for (const auto& [body, status] : std::vector<std::pair<json, int>>{
           {{{"assistant_id", "linear"}}, 400},
           {{{"assistant_id", "linear"}, {"schedule", "61 * * * *"}}, 400},
           {{{"assistant_id", "linear"}, {"schedule", "* * *"}}, 400},
           {{{"assistant_id", "linear"}, {"schedule", "* * * * *"}, {"timezone", "Mars/Base"}}, 400},
           {{{"assistant_id", "linear"}, {"schedule", "0 0 30 2 *"}}, 400},
           {{{"assistant_id", "linear"}, {"schedule", "* * * * *"}, {"stream_mode", "nope"}}, 400},
           {{{"assistant_id", "linear"}, {"schedule", "* * * * *"}, {"end_time", "not a time"}}, 400},
           {{{"assistant_id", "nope"}, {"schedule", "* * * * *"}}, 404}}) {
    auto r = server->call("POST", "/runs/crons", a->key, body.dump());
    EXPECT_EQ(r.status, status) << body.dump() << " -> " << r.body;
    EXPECT_NE(r.body.find("detail"), std::string::npos) << r.body;
  }
  EXPECT_EQ(post("/runs/crons/count", a->key, json::object()), 0);
  EXPECT_EQ(server->call("POST", "/threads/" + new_thread(b->key) + "/runs/crons", a->key,
                         R"({"assistant_id": "linear", "schedule": "* * * * *"})").status, 404) << "B's thread";

  std::string t = new_thread(a->key);
  json cron = post("/threads/" + t + "/runs/crons", a->key,
                   {{"assistant_id", "linear"}, {"schedule", "0 9 * * mon-fri"}, {"timezone", "Europe/Paris"},
                    {"input", {{"count", 0}}}, {"metadata", {{"origin", "cron"}}}});
  EXPECT_EQ(cron["thread_id"], t);
  EXPECT_EQ(cron["enabled"], true);
  EXPECT_EQ(cron["timezone"], "Europe/Paris");
  EXPECT_TRUE(cron["on_run_completed"].is_null());
  const std::string id = cron["cron_id"];
  EXPECT_EQ(server->call("PATCH", "/runs/crons/" + id, a->key, "{}").status, 400);
  EXPECT_EQ(server->call("PATCH", "/runs/crons/" + id, a->key, R"({"schedule": "bad"})").status, 400);
  EXPECT_EQ(server->call("PATCH", "/runs/crons/" + id, b->key, R"({"enabled": false})").status, 404);
  EXPECT_EQ(server->call("DELETE", "/runs/crons/" + id, b->key).status, 404);
  EXPECT_EQ(post("/runs/crons/search", b->key, json::object()).size(), 0u);

  // Due now (as if the schedule came round): a replica fires it once, on the cron's thread.
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  ASSERT_TRUE((*su)->exec("UPDATE agentplane.crons SET next_run_date = now() WHERE cron_id = $1", {id}));
  json runs;
  ASSERT_TRUE(eventually([&] {
    runs = server->call_json("GET", "/threads/" + t + "/runs", a->key);
    return runs.size() == 1 && runs[0]["status"] == "success";
  }, std::chrono::seconds(10))) << runs.dump();
  EXPECT_EQ(runs[0]["metadata"]["origin"], "cron");
  EXPECT_EQ(server->call_json("GET", "/threads/" + t + "/state", a->key)["values"]["count"], 3);
  json after = post("/runs/crons/search", a->key, {{"thread_id", t}})[0];
  EXPECT_GT(after["next_run_date"].get<std::string>(), runs[0]["created_at"].get<std::string>()) << after.dump();

  // A disabled cron does not fire; a stateless one runs on a new thread that is deleted after.
  json off = server->call_json("PATCH", "/runs/crons/" + id, a->key, R"({"enabled": false})");
  EXPECT_EQ(off["enabled"], false);
  json stateless = post("/runs/crons", a->key, {{"assistant_id", "linear"}, {"schedule", "@daily"}, {"input", {{"count", 5}}}});
  EXPECT_EQ(stateless["on_run_completed"], "delete");
  ASSERT_TRUE((*su)->exec("UPDATE agentplane.crons SET next_run_date = now() WHERE tenant_id = $1", {a->id}));
  ASSERT_TRUE(eventually([&] {
    auto r = (*su)->exec("SELECT count(*) FROM agentplane.crons WHERE tenant_id = $1 AND next_run_date <= now() AND enabled",
                         {a->id});
    return r && r->get(0, 0) == "0";
  }, std::chrono::seconds(10)));
  EXPECT_EQ(server->call_json("GET", "/threads/" + t + "/runs", a->key).size(), 1u) << "the disabled cron stayed quiet";
  EXPECT_EQ(server->call("DELETE", "/runs/crons/" + id, a->key).status, 204);
  EXPECT_EQ(server->call("DELETE", "/runs/crons/" + id, a->key).status, 404);
  EXPECT_EQ(server->call("DELETE", "/runs/crons/" + stateless["cron_id"].get<std::string>(), a->key).status, 204);
}


// A loop of `n` + 1 steps until n reaches `limit` (two supersteps a round), for runs that last.
json counting_loop(int limit) {
  return {{"channels", {{"n", "last_value"}}},
          {"nodes",
           {{"tick", {{"kind", "set"}, {"values", {{"n", {{"increment", "n"}}}}}}},
            {"again",
             {{"kind", "router"},
              {"cases", json::array({{{"when", {{"path", "n"}, {"op", "<"}, {"value", limit}}}, {"goto", "tick"}}})},
              {"default", "__end__"}}}}},
          {"edges", json::array({json::array({"__start__", "tick"}), json::array({"tick", "again"})})}};
}

// A run that starts while the worker's lease renewal is on its way keeps running: the renewal's
// answer speaks only for the runs it asked about. (It was once read against every run running
// by the time it came back: one started meanwhile was missing from it, taken for lost, stopped
// at its next step and queued again, for a second attempt; at 100 connections about a hundred
// runs every two seconds.) The renewal is held on its way by a lock on the row it renews.
TEST(WorkerLeases, ARunStartedWhileLeasesAreRenewedIsNotTakenForLost) {
  TestServer server(2, std::chrono::seconds(30), {}, "all", "", 600);  // renewed every 120 ms
  auto t = server.make_tenant("leases");
  ASSERT_EQ(server.call("PUT", "/v1/graphs/forever", t.key, counting_loop(1000000).dump()).status, 201);
  ASSERT_EQ(server.call("PUT", "/v1/graphs/while", t.key, counting_loop(400).dump()).status, 201);
  auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  auto start = [&](const std::string& graph) {
    json body = {{"assistant_id", graph}, {"input", {{"n", 0}}}, {"durability", "sync"},
                 {"config", {{"recursion_limit", 10000}}}};
    return server.call_json("POST", "/runs", t.key, body.dump());
  };
  auto row = [&](const std::string& run) {
    auto r = su->exec("SELECT status, attempt FROM agentplane.runs WHERE run_id = $1", {run});
    EXPECT_TRUE(r && r->size() == 1);
    return r && r->size() == 1 ? std::pair{std::string(r->get(0, 0)), std::string(r->get(0, 1))}
                               : std::pair{std::string(), std::string()};
  };
  auto until = [](auto done) {
    for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return done();
  };
  // A: running long enough (a third of its lease) to be renewed.
  const std::string a = start("forever")["run_id"];
  ASSERT_TRUE(until([&] { return row(a).first == "running"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Its row locked: the next renewal waits for it.
  ASSERT_TRUE(su->exec_script("BEGIN"));
  ASSERT_TRUE(su->exec("SELECT 1 FROM agentplane.runs WHERE run_id = $1 FOR UPDATE", {a}));
  auto other = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  ASSERT_TRUE(until([&] {
    auto w = other->exec("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%renew_leases(%' "
                         "AND wait_event_type = 'Lock'");
    return w && w->get(0, 0) == "1";
  })) << "no renewal waited for the lock";
  // B starts (in process, at once) while that renewal is on its way, then the renewal answers.
  const std::string b = start("while")["run_id"];
  EXPECT_EQ(row(b), (std::pair<std::string, std::string>{"running", "1"}));
  ASSERT_TRUE(su->exec_script("COMMIT"));
  ASSERT_TRUE(until([&] { return row(b).first == "success"; })) << row(b).first;
  EXPECT_EQ(row(b).second, "1") << "B was stopped and run again";
  // A: cancelled.
  const auto a_thread = su->exec("SELECT thread_id FROM agentplane.runs WHERE run_id = $1", {a});
  ASSERT_TRUE(a_thread);
  EXPECT_EQ(server.call("POST", "/threads/" + std::string(a_thread->get(0, 0)) + "/runs/" + a + "/cancel", t.key).status, 202);
  EXPECT_TRUE(until([&] { return row(a).first != "running"; }));
}


// A run enqueued behind a thread's running run (migration 0034) does not make new runs queue: no
// claim could start it, so the queue stays quiet and a new stateless run starts in process at
// once. When the thread's run ends, its worker claims the waiting run at once.
TEST_F(AgentApi, ARunWaitingForItsThreadDoesNotQueueOtherRuns) {
  ASSERT_EQ(server->call("PUT", "/v1/graphs/endless", a->key, counting_loop(1000000).dump()).status, 201);
  const std::string t = new_thread(a->key);
  auto first = post("/threads/" + t + "/runs", a->key,
                    {{"assistant_id", "endless"}, {"input", {{"n", 0}}}, {"config", {{"recursion_limit", 10000}}}});
  const std::string first_id = first["run_id"];
  auto status = [&](const std::string& run) {
    return server->call_json("GET", "/threads/" + t + "/runs/" + run, a->key)["status"].get<std::string>();
  };
  for (int i = 0; i < 500 && status(first_id) != "running"; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(status(first_id), "running");
  auto queued = post("/threads/" + t + "/runs", a->key,
                     {{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"multitask_strategy", "enqueue"}});
  const std::string queued_id = queued["run_id"];
  EXPECT_EQ(queued["status"], "pending");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the claim round its NOTIFY started is over
  const double local0 = metric("agentplane_runs_started_locally_total");
  const double claimed0 = metric("agentplane_runs_claimed_total");
  EXPECT_EQ(post("/runs/wait", a->key, {{"assistant_id", "linear"}, {"input", {{"count", 1}}}})["count"], 4);
  EXPECT_EQ(metric("agentplane_runs_started_locally_total"), local0 + 1) << "the new run was queued";
  EXPECT_EQ(metric("agentplane_runs_claimed_total"), claimed0);
  EXPECT_EQ(status(queued_id), "pending");
  // The thread's run ends (cancelled): the waiting run is claimed by its worker at once, not by
  // the once-a-second round of a quiet queue.
  const auto cancelled = std::chrono::steady_clock::now();
  EXPECT_EQ(server->call("POST", "/threads/" + t + "/runs/" + first_id + "/cancel", a->key).status, 202);
  for (int i = 0; i < 1000 && status(queued_id) == "pending"; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto waited = std::chrono::steady_clock::now() - cancelled;
  EXPECT_NE(status(queued_id), "pending");
  EXPECT_LT(waited, std::chrono::milliseconds(600));
  auto joined = server->call_json("GET", "/threads/" + t + "/runs/" + queued_id + "/join", a->key);
  EXPECT_EQ(joined["count"], 3) << joined.dump();
  EXPECT_EQ(metric("agentplane_runs_claimed_total"), claimed0 + 1);
}

}  // namespace
}  // namespace ap::testing
