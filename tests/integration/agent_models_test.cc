// Agents calling models on the real server: the ReAct template (llm + tools nodes) on the
// scripted model, run through the agent API; tokens streamed in both messages modes; an http
// tool with a vault credential injected (it calls this same server's API with the tenant's key);
// usage records for the run's calls; limits refusing a model call inside a run; the run's cost
// in the audit log.
#include <gtest/gtest.h>
#include <map>

#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

struct SseEvent {
  std::string event;
  json data;
};

std::vector<SseEvent> parse_sse(const std::string& body) {
  std::vector<SseEvent> out;
  size_t p = 0;
  while (p < body.size()) {
    size_t end = body.find("\n\n", p);
    if (end == std::string::npos) break;
    std::string block = body.substr(p, end - p);
    p = end + 2;
    SseEvent e;
    size_t q = 0;
    while (q < block.size()) {
      size_t nl = block.find('\n', q);
      std::string line = block.substr(q, nl == std::string::npos ? std::string::npos : nl - q);
      if (line.rfind("event: ", 0) == 0) e.event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = json::parse(line.substr(6));
      if (nl == std::string::npos) break;
      q = nl + 1;
    }
    if (!e.event.empty()) out.push_back(std::move(e));
  }
  return out;
}

class AgentModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server = new TestServer();
    t = new TestServer::Tenant(server->make_tenant("agent-models"));
    // Call 1 of each user turn asks the calculator, call 2 answers with the tool's result.
    const json route = {{"provider", "scripted"},
                        {"upstream_model", "scripted-react"},
                        {"script", {{"replies", json::array({
                                        {{"content", ""},
                                         {"tool_calls", {{{"name", "calculator"}, {"args", {{"expression", "6 * 7"}}}}}}},
                                        "The answer is {{last}}."})},
                                    {"token_delay_ms", 1}}}};
    ASSERT_EQ(server->call("PUT", "/v1/model-routes/react-model", t->key, route.dump()).status, 201);
    const json assistant = {{"graph_id", "builtin.react_agent"},
                            {"name", "calc"},
                            {"config", {{"configurable", {{"model", "react-model"}, {"tools", {"calculator"}},
                                                          {"system_prompt", "Use the calculator."}}}}}};
    assistant_id = server->call_json("POST", "/assistants", t->key, assistant.dump())["assistant_id"];
  }
  static void TearDownTestSuite() {
    delete t;
    delete server;
  }
  static std::string new_thread() { return server->call_json("POST", "/threads", t->key, "{}")["thread_id"]; }
  static json user(const std::string& text) { return {{"messages", {{{"role", "user"}, {"content", text}}}}}; }

  static TestServer* server;
  static TestServer::Tenant* t;
  static std::string assistant_id;
};
TestServer* AgentModels::server = nullptr;
TestServer::Tenant* AgentModels::t = nullptr;
std::string AgentModels::assistant_id;

TEST_F(AgentModels, ReactAgentCallsAToolAndAnswers) {
  const std::string thread = new_thread();
  auto out = server->call_json("POST", "/threads/" + thread + "/runs/wait", t->key,
                               json{{"assistant_id", assistant_id}, {"input", user("what is 6 times 7?")}}.dump());
  ASSERT_TRUE(out.contains("messages")) << out.dump();
  const json& m = out["messages"];
  ASSERT_EQ(m.size(), 4u) << m.dump(2);
  EXPECT_EQ(m[0]["type"], "human");
  EXPECT_EQ(m[1]["tool_calls"][0]["name"], "calculator");
  EXPECT_EQ(m[2]["type"], "tool");
  EXPECT_EQ(m[2]["content"], "42");
  EXPECT_EQ(m[3]["type"], "ai");
  EXPECT_EQ(m[3]["content"], "The answer is 42.");
  // The thread holds the conversation; a second turn goes on from it.
  auto again = server->call_json("POST", "/threads/" + thread + "/runs/wait", t->key,
                                 json{{"assistant_id", assistant_id}, {"input", user("and again?")}}.dump());
  EXPECT_EQ(again["messages"].size(), 8u);
  // One usage record per model call, with the thread and the run (written off the request path).
  bool recorded = eventually([&] {
    auto u = server->call_json("GET", "/v1/usage?group_by=model", t->key);
    return u["rows"].size() == 1 && u["rows"][0]["group"] == "react-model" && u["rows"][0]["requests"] == 4;
  });
  EXPECT_TRUE(recorded) << server->call("GET", "/v1/usage?group_by=model", t->key).body;
  // The run's cost is in the audit log.
  bool audited = eventually([&] {
    auto a = server->call_json("GET", "/v1/audit?kind=run.cost", t->key);
    return a["items"].size() == 2 && a["items"][0]["entry"]["payload"]["model_calls"] == 2;
  });
  EXPECT_TRUE(audited) << server->call("GET", "/v1/audit?kind=run.cost", t->key).body;
  // Operators read it too: the admin endpoint and `agentplane usage`.
  auto admin = server->call_json("GET", "/v1/tenants/" + t->id + "/usage?group_by=day", server->admin_token());
  EXPECT_EQ(admin["total"]["requests"], 4);
  EXPECT_EQ(server->call("GET", "/v1/tenants/" + t->id + "/usage", t->key).status, 403);
  EXPECT_EQ(server->call("GET", "/v1/tenants/00000000-0000-7000-8000-000000000000/usage", server->admin_token()).status, 404);
  EXPECT_EQ(server->call("GET", "/v1/tenants/" + t->id + "/usage?group_by=color", server->admin_token()).status, 400);
  const std::vector<std::string> admin_env = {"AGENTPLANE_URL=" + server->url(), "AGENTPLANE_ADMIN_TOKEN=" + server->admin_token()};
  auto r = agentplane({"usage", "--tenant", t->id}, admin_env);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["rows"][0]["group"], "react-model");
  r = agentplane({"usage", "--all-tenants"}, admin_env);
  ASSERT_EQ(r.code, 0) << r.err;
  bool listed = false;
  const json all = json::parse(r.out);
  for (const auto& row : all["rows"])
    if (row["tenant_id"] == t->id) listed = row.value("requests", 0) == 4;
  EXPECT_TRUE(listed) << r.out;
  r = agentplane({"usage", "--group-by", "key"}, {"AGENTPLANE_URL=" + server->url(), "AGENTPLANE_API_KEY=" + t->key});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["group_by"], "key");
  r = agentplane({"usage", "--group-by", "color"}, admin_env);
  EXPECT_EQ(r.code, 2);
}

TEST_F(AgentModels, TokensStreamInBothMessagesModes) {
  const std::string thread = new_thread();
  auto s = server->call("POST", "/threads/" + thread + "/runs/stream", t->key,
                        json{{"assistant_id", assistant_id}, {"input", user("6*7?")}, {"stream_mode", {"messages-tuple"}}}.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  auto events = parse_sse(s.body);
  std::string text, final_id;
  int tool_messages = 0, chunks = 0;
  for (const auto& e : events) {
    if (e.event != "messages") continue;
    const json& msg = e.data[0];
    const json& meta = e.data[1];
    if (msg["type"] == "AIMessageChunk") {
      ++chunks;
      EXPECT_EQ(meta["langgraph_node"], "agent");
      if (!msg["content"].get<std::string>().empty()) {
        text += msg["content"].get<std::string>();
        final_id = msg["id"];
      }
    } else if (msg["type"] == "tool") {
      ++tool_messages;
      EXPECT_EQ(meta["langgraph_node"], "tools");
    } else {
      ADD_FAILURE() << "a streamed AI message came again whole: " << msg.dump();
    }
  }
  EXPECT_EQ(text, "The answer is 42.");
  EXPECT_GT(chunks, 3);
  EXPECT_EQ(tool_messages, 1);
  auto state = server->call_json("GET", "/threads/" + thread + "/state", t->key);
  EXPECT_EQ(state["values"]["messages"][3]["id"], final_id);

  // messages mode: metadata once per message, partials that grow, complete for every message.
  auto p = server->call("POST", "/threads/" + thread + "/runs/stream", t->key,
                        json{{"assistant_id", assistant_id}, {"input", user("again")}, {"stream_mode", "messages"}}.dump());
  ASSERT_EQ(p.status, 200);
  std::string last_partial;
  int metadata = 0, complete = 0, ai_complete = 0;
  std::map<std::string, std::string> partial_of;  // message id -> its last partial's content
  for (const auto& e : parse_sse(p.body)) {
    if (e.event == "messages/metadata") ++metadata;
    if (e.event == "messages/complete") {
      ++complete;
      if (e.data[0]["type"] == "ai") {  // a streamed message ends whole, as the last partial had it
        const std::string id = e.data[0]["id"];
        EXPECT_EQ(e.data[0]["content"], partial_of[id]);
        ++ai_complete;
      }
    }
    if (e.event == "messages/partial") {
      const std::string now = e.data[0]["content"];
      partial_of[e.data[0]["id"]] = now;
      if (!now.empty()) {
        EXPECT_EQ(now.rfind(last_partial, 0), 0u) << "a partial must extend the one before";
        last_partial = now;
      }
      EXPECT_EQ(e.data[0]["type"], "ai");
    }
  }
  EXPECT_EQ(last_partial, "The answer is 42.");
  EXPECT_EQ(metadata, 3);  // tool-calling AI message, tool message, answer
  EXPECT_EQ(complete, 3);
  EXPECT_EQ(ai_complete, 2);
}

// The `events` mode: the graph's and nodes' chain events, and inside the nodes the model's and
// the tool's calls, as LangGraph's server streams astream_events v2.
TEST_F(AgentModels, EventsModeShowsTheModelAndToolCallsInsideTheNodes) {
  const std::string thread = new_thread();
  auto s = server->call("POST", "/threads/" + thread + "/runs/stream", t->key,
                        json{{"assistant_id", assistant_id}, {"input", user("6*7?")}, {"stream_mode", "events"}}.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  const auto all = parse_sse(s.body);
  ASSERT_FALSE(all.empty());
  const std::string run_id = all[0].data["run_id"];
  std::vector<json> ev;
  for (const auto& e : all)
    if (e.event == "events") ev.push_back(e.data);
  // The chain events, and what happened inside each node (chat model chunks folded into one).
  std::vector<std::string> order;
  for (const auto& e : ev) {
    const std::string item = e["event"].get<std::string>() + ":" + e["name"].get<std::string>();
    if (order.empty() || order.back() != item || item != "on_chat_model_stream:ScriptedChatModel") order.push_back(item);
  }
  EXPECT_EQ(order, (std::vector<std::string>{
                       "on_chain_start:LangGraph", "on_chain_start:agent", "on_chat_model_start:ScriptedChatModel",
                       "on_chat_model_stream:ScriptedChatModel", "on_chat_model_end:ScriptedChatModel",
                       "on_chain_stream:agent", "on_chain_end:agent", "on_chain_start:route", "on_chain_stream:route",
                       "on_chain_end:route", "on_chain_start:tools", "on_tool_start:calculator", "on_tool_end:calculator",
                       "on_chain_stream:tools", "on_chain_end:tools", "on_chain_start:agent",
                       "on_chat_model_start:ScriptedChatModel", "on_chat_model_stream:ScriptedChatModel",
                       "on_chat_model_end:ScriptedChatModel", "on_chain_stream:agent", "on_chain_end:agent",
                       "on_chain_start:route", "on_chain_stream:route", "on_chain_end:route", "on_chain_end:LangGraph"}))
      << s.body;
  std::string text, agent_task, model_run;
  for (const auto& e : ev) {
    const std::string kind = e["event"];
    if (kind == "on_chain_start" && e["name"] == "agent") agent_task = e["run_id"];
    if (kind.rfind("on_chat_model_", 0) == 0) {
      // Inside the agent node's task: its metadata, the graph's run then the task as parents.
      EXPECT_EQ(e["parent_ids"], json::array({run_id, agent_task}));
      EXPECT_EQ(e["metadata"]["langgraph_node"], "agent");
      EXPECT_EQ(e["metadata"]["checkpoint_ns"], "agent:" + agent_task);
      EXPECT_EQ(e["metadata"]["ls_provider"], "scripted");
      EXPECT_EQ(e["metadata"]["ls_model_name"], "scripted-react");
      EXPECT_EQ(e["metadata"]["assistant_id"], assistant_id);
      if (kind == "on_chat_model_start") {
        model_run = e["run_id"];
        EXPECT_EQ(e["data"]["input"]["messages"][0][0]["type"], "system");
      } else {
        EXPECT_EQ(e["run_id"], model_run);
      }
      if (kind == "on_chat_model_stream") text += e["data"]["chunk"]["content"].get<std::string>();
      if (kind == "on_chat_model_end" && !text.empty()) {
        EXPECT_EQ(e["data"]["output"]["content"], text);
      }
    }
    if (kind == "on_tool_end") {
      EXPECT_EQ(e["data"]["input"], (json{{"expression", "6 * 7"}}));
      EXPECT_EQ(e["data"]["output"]["type"], "tool");
      EXPECT_EQ(e["data"]["output"]["content"], "42");
      EXPECT_EQ(e["metadata"]["langgraph_node"], "tools");
    }
  }
  EXPECT_EQ(text, "The answer is 42.");
}

// A run on a namespace of its thread (`checkpoint: {checkpoint_ns}`) is the root of its own
// stream: its nodes' tokens and calls are not named after that namespace.
TEST_F(AgentModels, ARunOnANamespaceStreamsAsItsRoot) {
  const std::string thread = new_thread();
  auto s = server->call("POST", "/threads/" + thread + "/runs/stream", t->key,
                        json{{"assistant_id", assistant_id},
                             {"input", user("6*7?")},
                             {"checkpoint", {{"checkpoint_ns", "side:1"}}},
                             {"stream_mode", {"messages-tuple", "events"}}}.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  const auto all = parse_sse(s.body);
  ASSERT_FALSE(all.empty());
  const std::string run_id = all[0].data["run_id"];
  int tokens = 0, calls = 0;
  for (const auto& e : all) {
    EXPECT_EQ(e.event.find('|'), std::string::npos) << e.event;
    if (e.event == "messages" && e.data[0]["type"] == "AIMessageChunk") {
      ++tokens;
      EXPECT_EQ(e.data[1]["langgraph_checkpoint_ns"].get<std::string>().rfind("agent:", 0), 0u) << e.data[1].dump();
    }
    if (e.event == "events" && e.data["event"] == "on_chat_model_start") {
      ++calls;
      ASSERT_EQ(e.data["parent_ids"].size(), 2u) << e.data.dump();
      EXPECT_EQ(e.data["parent_ids"][0], run_id);
    }
  }
  EXPECT_GT(tokens, 3);
  EXPECT_EQ(calls, 2);
}

TEST_F(AgentModels, HttpToolGetsTheVaultCredential) {
  // The tool reads this tenant's own limits through the API, authenticated by a key kept in the
  // vault: without the injected credential the call would be refused.
  // First without allowed_hosts: tools may not send such a credential anywhere.
  ASSERT_EQ(server->call("PUT", "/v1/credentials/self-api", t->key,
                         json{{"value", t->key}, {"kind", "http_header"}}.dump()).status / 100, 2);
  const json tools = {{{"name", "my_limits"},
                       {"description", "reads my limits"},
                       {"http", {{"url", server->url() + "/v1/limits"}, {"credential", "self-api"}}}},
                      {{"name", "anonymous"}, {"http", {{"url", server->url() + "/v1/limits"}}}}};
  const json route = {{"provider", "scripted"},
                      {"upstream_model", "s"},
                      {"script", json::array({{{"content", ""},
                                               {"tool_calls", {{{"name", "my_limits"}, {"args", json::object()}},
                                                               {{"name", "anonymous"}, {"args", json::object()}}}}},
                                              "done"})}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/http-model", t->key, route.dump()).status, 201);
  const json assistant = {{"graph_id", "builtin.react_agent"},
                          {"config", {{"configurable", {{"model", "http-model"}, {"tools", tools}}}}}};
  std::string id = server->call_json("POST", "/assistants", t->key, assistant.dump())["assistant_id"];
  auto refused = server->call_json("POST", "/runs/wait", t->key, json{{"assistant_id", id}, {"input", user("limits?")}}.dump());
  ASSERT_EQ(refused["messages"].size(), 5u) << refused.dump(2);
  EXPECT_EQ(refused["messages"][2]["status"], "error");
  EXPECT_NE(refused["messages"][2]["content"].get<std::string>().find("lists no allowed_hosts"), std::string::npos)
      << refused["messages"][2].dump();
  // Listed hosts only: another host is refused too, and neither refusal decrypted anything.
  auto put = server->call_json("PUT", "/v1/credentials/self-api", t->key,
                               json{{"value", t->key}, {"kind", "http_header"}, {"allowed_hosts", {"api.example.com"}}}.dump());
  EXPECT_EQ(put["allowed_hosts"], json::array({"api.example.com"})) << put.dump();
  refused = server->call_json("POST", "/runs/wait", t->key, json{{"assistant_id", id}, {"input", user("limits?")}}.dump());
  EXPECT_NE(refused["messages"][2]["content"].get<std::string>().find("not in the credential's allowed_hosts"), std::string::npos)
      << refused["messages"][2].dump();
  EXPECT_TRUE(eventually([&] {
    return server->call_json("GET", "/v1/audit?kind=credential.refused", t->key)["items"].size() == 2;
  }));
  EXPECT_EQ(server->call_json("GET", "/v1/audit?kind=credential.use", t->key)["items"].size(), 0u);
  EXPECT_EQ(server->call("PUT", "/v1/credentials/self-api", t->key,
                         json{{"value", "x"}, {"kind", "http_header"}, {"allowed_hosts", {"https://evil.example/"}}}.dump()).status,
            400);
  ASSERT_EQ(server->call("PUT", "/v1/credentials/self-api", t->key,
                         json{{"value", t->key}, {"kind", "http_header"}, {"allowed_hosts", {"127.0.0.1"}}}.dump()).status,
            200);
  auto out = server->call_json("POST", "/runs/wait", t->key, json{{"assistant_id", id}, {"input", user("limits?")}}.dump());
  const json& m = out["messages"];
  ASSERT_EQ(m.size(), 5u) << out.dump(2);
  EXPECT_EQ(m[2]["status"], "success") << m[2].dump();
  EXPECT_NE(m[2]["content"].get<std::string>().find("\"limits\""), std::string::npos) << m[2].dump();
  EXPECT_EQ(m[3]["status"], "error");
  EXPECT_EQ(m[3]["content"].get<std::string>().rfind("Error: HTTP 401", 0), 0u) << m[3].dump();
  EXPECT_EQ(out.dump().find(t->key), std::string::npos) << "the credential must not reach the state";
  // Each use of the credential is audited.
  bool audited = eventually([&] {
    auto a = server->call_json("GET", "/v1/audit?kind=credential.use", t->key);
    for (const auto& i : a["items"])
      if (i["entry"]["payload"].dump().find("http tool") != std::string::npos) return true;
    return false;
  });
  EXPECT_TRUE(audited);
}

TEST_F(AgentModels, LimitsRefuseModelCallsInRuns) {
  auto other = server->make_tenant("agent-models-limited");
  const json route = {{"provider", "scripted"}, {"upstream_model", "s"}, {"script", json::array({"hello"})}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/m", other.key, route.dump()).status, 201);
  ASSERT_EQ(server->call("PUT", "/v1/tenants/" + other.id + "/limits", server->admin_token(),
                         json{{"model_requests_per_min", 1}}.dump()).status, 200);
  const json assistant = {{"graph_id", "builtin.react_agent"}, {"config", {{"configurable", {{"model", "m"}}}}}};
  std::string id = server->call_json("POST", "/assistants", other.key, assistant.dump())["assistant_id"];
  auto first = server->call_json("POST", "/runs/wait", other.key, json{{"assistant_id", id}, {"input", user("hi")}}.dump());
  EXPECT_EQ(first["messages"][1]["content"], "hello") << first.dump();
  auto second = server->call_json("POST", "/runs/wait", other.key, json{{"assistant_id", id}, {"input", user("hi")}}.dump());
  ASSERT_TRUE(second.contains("__error__")) << second.dump();
  EXPECT_NE(second["__error__"]["message"].get<std::string>().find("model requests per minute"), std::string::npos)
      << second.dump();
  // An unknown model is a clear error too.
  const json bad = {{"graph_id", "builtin.react_agent"}, {"config", {{"configurable", {{"model", "nope"}}}}}};
  std::string bad_id = server->call_json("POST", "/assistants", other.key, bad.dump())["assistant_id"];
  auto third = server->call_json("POST", "/runs/wait", other.key, json{{"assistant_id", bad_id}, {"input", user("hi")}}.dump());
  EXPECT_NE(third.dump().find("model 'nope' is not one of the tenant's model routes"), std::string::npos) << third.dump();
}

TEST_F(AgentModels, ACallThatFailsBeforeTheModelGivesItsReservationBack) {
  // Each call reserves 4096 completion tokens of a 5000 per-minute limit; the credential is
  // missing, so no call reaches the model, and every one must give its reservation back.
  auto other = server->make_tenant("agent-models-reservation");
  const json route = {{"provider", "openai"}, {"upstream_model", "m"}, {"base_url", "http://127.0.0.1:9/v1"},
                      {"credential", "absent"}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/keyless", other.key, route.dump()).status, 201);
  ASSERT_EQ(server->call("PUT", "/v1/tenants/" + other.id + "/limits", server->admin_token(),
                         json{{"model_tokens_per_min", 5000}}.dump()).status, 200);
  const json assistant = {{"graph_id", "builtin.react_agent"}, {"config", {{"configurable", {{"model", "keyless"}}}}}};
  std::string id = server->call_json("POST", "/assistants", other.key, assistant.dump())["assistant_id"];
  for (int i = 0; i < 3; ++i) {
    auto out = server->call_json("POST", "/runs/wait", other.key, json{{"assistant_id", id}, {"input", user("hi")}}.dump());
    ASSERT_TRUE(out.contains("__error__")) << out.dump();
    EXPECT_NE(out["__error__"]["message"].get<std::string>().find("not in the tenant's vault"), std::string::npos)
        << i << ": " << out.dump();
  }
}

TEST_F(AgentModels, ARouteCannotSendACredentialOutsideItsAllowedHosts) {
  auto other = server->make_tenant("agent-models-allowed-hosts");
  ASSERT_EQ(server->call("PUT", "/v1/credentials/provider", other.key,
                         json{{"value", "sk-test-allowed-hosts"}, {"kind", "provider_key"}, {"allowed_hosts", {"api.example.com"}}}.dump())
                .status,
            201);
  const json route = {{"provider", "openai"}, {"upstream_model", "m"}, {"base_url", "http://127.0.0.1:9/v1"}, {"credential", "provider"}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/elsewhere", other.key, route.dump()).status, 201);
  auto r = server->call("POST", "/v1/chat/completions", other.key,
                        json{{"model", "elsewhere"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}.dump());
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("may not be sent to '127.0.0.1'"), std::string::npos) << r.body;
  EXPECT_TRUE(eventually([&] {
    return server->call_json("GET", "/v1/audit?kind=credential.refused", other.key)["items"].size() == 1;
  }));
  EXPECT_EQ(server->call_json("GET", "/v1/audit?kind=credential.use", other.key)["items"].size(), 0u);
}

TEST_F(AgentModels, GatewayCallsBecomeCostEventsInTheAuditLog) {
  auto other = server->make_tenant("agent-models-costs");
  const json route = {{"provider", "scripted"}, {"upstream_model", "s"}, {"script", json::array({"hi there"})},
                      {"prices", {{"input_cost_per_token", 0.000001}, {"output_cost_per_token", 0.000002}}}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/priced", other.key, route.dump()).status, 201);
  const json body = {{"model", "priced"}, {"messages", {{{"role", "user"}, {"content", "hello"}}}}};
  for (int i = 0; i < 3; ++i) ASSERT_EQ(server->call("POST", "/v1/chat/completions", other.key, body.dump()).status, 200);
  // One event per tenant and window (the shards write theirs every 10 s), not one per call.
  json events;
  bool written = eventually(
      [&] {
        events = server->call_json("GET", "/v1/audit?kind=model.cost", other.key)["items"];
        int64_t requests = 0;
        for (const auto& e : events) requests += e["entry"]["payload"]["requests"].get<int64_t>();
        return requests == 3;
      },
      std::chrono::seconds(25));
  ASSERT_TRUE(written) << events.dump();
  const json& p = events[0]["entry"]["payload"];
  EXPECT_EQ(p["source"], "gateway");
  EXPECT_GT(p["cost_micro_usd"].get<int64_t>(), 0);
  EXPECT_TRUE(p["models"].contains("priced"));
}

TEST_F(AgentModels, CancelAbortsAModelCallInFlight) {
  // 40 words at 250 ms each: 10 s of streaming, unless the cancel ends it.
  std::string words;
  for (int i = 0; i < 40; ++i) words += "word ";
  const json route = {{"provider", "scripted"}, {"upstream_model", "s"},
                      {"script", {{"replies", {words}}, {"token_delay_ms", 250}}}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/very-slow", t->key, route.dump()).status, 201);
  const json assistant = {{"graph_id", "builtin.react_agent"}, {"config", {{"configurable", {{"model", "very-slow"}}}}}};
  std::string id = server->call_json("POST", "/assistants", t->key, assistant.dump())["assistant_id"];
  const std::string thread = new_thread();
  std::string run = server->call_json("POST", "/threads/" + thread + "/runs", t->key,
                                      json{{"assistant_id", id}, {"input", user("talk")}}.dump())["run_id"];
  const std::string path = "/threads/" + thread + "/runs/" + run;
  ASSERT_TRUE(eventually([&] { return server->call_json("GET", path, t->key)["status"] == "running"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // inside the model call
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(server->call("POST", path + "/cancel?wait=true", t->key).status / 100, 2);
  EXPECT_TRUE(eventually([&] { return server->call_json("GET", path, t->key)["status"] == "interrupted"; }));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3)) << "the call was not aborted";
  // The aborted call is still recorded (tokens estimated), as a client disconnect is.
  EXPECT_TRUE(eventually([&] {
    auto u = server->call_json("GET", "/v1/usage?group_by=model", t->key);
    for (const auto& r : u["rows"])
      if (r["group"] == "very-slow") return r["requests"] == 1;
    return false;
  }));
}

TEST_F(AgentModels, ConcurrentRunsLimitHoldsRunsInTheQueue) {
  auto other = server->make_tenant("agent-models-concurrency");
  const json route = {{"provider", "scripted"},
                      {"upstream_model", "s"},
                      {"script", {{"replies", {"one two three four five six seven eight"}}, {"token_delay_ms", 40}}}};
  ASSERT_EQ(server->call("PUT", "/v1/model-routes/slow", other.key, route.dump()).status, 201);
  ASSERT_EQ(server->call("PUT", "/v1/tenants/" + other.id + "/limits", server->admin_token(),
                         json{{"concurrent_runs", 1}}.dump()).status, 200);
  EXPECT_EQ(server->call("PUT", "/v1/tenants/" + other.id + "/limits", server->admin_token(),
                         json{{"concurrent_runs", -1}}.dump()).status, 400);
  const json assistant = {{"graph_id", "builtin.react_agent"}, {"config", {{"configurable", {{"model", "slow"}}}}}};
  std::string id = server->call_json("POST", "/assistants", other.key, assistant.dump())["assistant_id"];
  for (int i = 0; i < 3; ++i) {
    std::string thread = server->call_json("POST", "/threads", other.key, "{}")["thread_id"];
    server->call_json("POST", "/threads/" + thread + "/runs", other.key, json{{"assistant_id", id}, {"input", user("go")}}.dump());
  }
  // Statuses in one snapshot (one GET per run could see a run end and the next start between
  // two GETs, and count both).
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  int max_running = 0;
  bool all_done = eventually(
      [&] {
        auto rows = (*su)->exec("SELECT count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = "
                                "'success') FROM agentplane.runs WHERE tenant_id = $1",
                                {other.id});
        if (!rows) return false;
        const int running = std::stoi(std::string(rows->get(0, 0))), done = std::stoi(std::string(rows->get(0, 1)));
        auto limits = server->call_json("GET", "/v1/limits", other.key);
        EXPECT_LE(limits["usage"]["concurrent_runs"]["used"].get<int>(), 1);
        max_running = std::max(max_running, running);
        return done == 3;
      },
      std::chrono::seconds(30));
  EXPECT_TRUE(all_done);
  EXPECT_EQ(max_running, 1);
}

}  // namespace
}  // namespace ap::testing
