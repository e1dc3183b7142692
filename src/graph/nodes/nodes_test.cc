#include <atomic>
#include <gtest/gtest.h>
#include <unistd.h>

#include <mutex>

#include "exec/sandbox/sandbox_test_util.h"
#include "graph/nodes/kinds.h"
#include "graph/nodes/messages.h"
#include "graph/nodes/run_services.h"
#include "graph/nodes/tools.h"

namespace ap::graph::nodes {
namespace {

// The platform, for tests: the scripted model (its reply streamed word by word) and canned
// HTTP answers; records what was asked.
class FakeServices : public RunServices {
 public:
  explicit FakeServices(Json script) : script_(std::move(script)) {}
  Result<ModelInfo> model_info(const std::string& model) override {
    ++infos;
    if (model != "scripted-1") return Error::not_found("no model route '" + model + "'");
    return ModelInfo{"scripted", "scripted-react"};
  }
  Result<llm::ChatResult> chat(const std::string& model, llm::ChatCall call, const llm::OnDelta& on_delta) override {
    std::lock_guard lock(mu_);
    models.push_back(model);
    calls.push_back(call);
    if (model != "scripted-1") return Error::not_found("no model route '" + model + "'");
    AP_ASSIGN_OR_RETURN(auto r, llm::scripted_reply(script_, call));
    const std::string& text = r.message.content;
    for (size_t i = 0; i < text.size();) {
      size_t sp = text.find(' ', i);
      size_t end = sp == std::string::npos ? text.size() : sp + 1;
      on_delta(std::string_view(text).substr(i, end - i));
      i = end;
    }
    return r;
  }
  // Code runs for real, in the native sandbox.
  Result<sandbox::RunResult> code(sandbox::Spec spec) override {
    {
      std::lock_guard lock(mu_);
      code_specs.push_back(spec);
    }
    auto sb = sandbox::make_sandbox("native");
    if (!sb) return sb.error();
    return sandbox::testing::run_sync(**sb, std::move(spec));
  }
  Result<HttpReply> http(HttpCall call) override {
    std::lock_guard lock(mu_);
    http_calls.push_back(call);
    if (call.url.find("denied") != std::string::npos) return Error::permission_denied("egress policy refuses 10.0.0.1");
    return HttpReply{call.url.find("missing") != std::string::npos ? 404 : 200, "application/json", R"({"temp": 21})"};
  }
  std::mutex mu_;
  Json script_;
  std::vector<std::string> models;
  std::vector<llm::ChatCall> calls;
  std::vector<HttpCall> http_calls;
  std::vector<sandbox::Spec> code_specs;
  std::atomic<int> infos = 0;  // model_info calls
};

const char* kReact = R"({
  "channels": {"messages": "messages"},
  "nodes": {
    "agent": {"kind": "llm", "model": {"from": "$config.configurable.model"},
              "system": "You are terse.", "tools": {"from": "$config.configurable.tools"}},
    "tools": {"kind": "tools", "tools": {"from": "$config.configurable.tools"}},
    "route": {"kind": "router",
              "cases": [{"when": {"path": "messages[-1].tool_calls", "op": "empty"}, "goto": "__end__"}],
              "default": "tools"}},
  "edges": [["__start__", "agent"], ["agent", "route"], ["tools", "agent"]]})";

std::shared_ptr<const CompiledGraph> compile(const std::string& text) {
  auto c = compile_spec(Json::parse(text), all_kinds());
  EXPECT_TRUE(c) << c.error().message;
  return c ? *c : nullptr;
}

TEST(AgentNodes, ReactLoopCallsAToolThenAnswersAndStreamsTokens) {
  auto g = compile(kReact);
  ASSERT_TRUE(g);
  auto svc = std::make_shared<FakeServices>(Json::parse(R"([
    {"content": "", "tool_calls": [{"name": "calculator", "args": {"expression": "(2 + 5) * 2"}, "id": "call_1"}]},
    "The answer is {{last}}."])"));
  RunOptions o;
  o.scope = svc;
  o.config = {{"configurable", {{"model", "scripted-1"}, {"tools", Json::array({"calculator"})}}}};
  std::vector<std::pair<std::string, Json>> chunks;
  o.on_message_chunk = [&](const ChunkSource& from, const Json& chunk) {
    EXPECT_EQ(from.ns, "");
    EXPECT_FALSE(from.task_id.empty());
    EXPECT_EQ(from.triggers, std::vector<std::string>{"branch:to:" + from.node});
    chunks.emplace_back(from.node, chunk);
  };
  auto r = g->invoke(Input::of({{"messages", Json::array({Json{{"role", "user"}, {"content", "what is (2+5)*2?"}}})}}), o);
  ASSERT_TRUE(r) << r.error().message;
  const Json& m = r->values["messages"];
  ASSERT_EQ(m.size(), 4u) << m.dump(2);
  EXPECT_EQ(m[0]["type"], "human");  // role coerced as LangGraph's add_messages does
  EXPECT_EQ(m[1]["type"], "ai");
  EXPECT_EQ(m[1]["tool_calls"][0]["name"], "calculator");
  EXPECT_EQ(m[1]["tool_calls"][0]["type"], "tool_call");
  EXPECT_EQ(m[2]["type"], "tool");
  EXPECT_EQ(m[2]["tool_call_id"], "call_1");
  EXPECT_EQ(m[2]["content"], "14");
  EXPECT_EQ(m[2]["status"], "success");
  EXPECT_EQ(m[3]["content"], "The answer is 14.");
  EXPECT_GT(m[3]["usage_metadata"]["output_tokens"].get<int>(), 0);
  EXPECT_EQ(m[3]["response_metadata"]["model_name"], "scripted-1");
  // The model saw the system prompt, the tools, and the tool's answer the second time.
  ASSERT_EQ(svc->calls.size(), 2u);
  EXPECT_EQ(svc->calls[0].messages[0].role, "system");
  ASSERT_EQ(svc->calls[0].tools.size(), 1u);
  EXPECT_EQ(svc->calls[0].tools[0].name, "calculator");
  EXPECT_EQ(svc->calls[1].messages.back().role, "tool");
  // Tokens were streamed with the id of the message stored afterwards, then the tool call chunk.
  std::string text;
  int tool_chunks = 0;
  for (const auto& [node, c] : chunks) {
    EXPECT_EQ(node, "agent");
    EXPECT_EQ(c["type"], "AIMessageChunk");
    if (c["id"] == m[3]["id"]) text += c["content"].get<std::string>();
    if (!c["tool_call_chunks"].empty()) {
      ++tool_chunks;
      EXPECT_EQ(c["id"], m[1]["id"]);
      EXPECT_EQ(c["tool_call_chunks"][0]["name"], "calculator");
    }
  }
  EXPECT_EQ(text, "The answer is 14.");
  EXPECT_EQ(tool_chunks, 1);
}

TEST(AgentNodes, UnknownToolAndToolErrorsBecomeErrorMessages) {
  auto g = compile(kReact);
  auto svc = std::make_shared<FakeServices>(Json::parse(R"([
    {"content": "", "tool_calls": [{"name": "weather", "args": {}, "id": "a"},
                                   {"name": "calculator", "args": {"expression": "1/0"}, "id": "b"}]},
    "sorry"])"));
  RunOptions o;
  o.scope = svc;
  o.config = {{"configurable", {{"model", "scripted-1"}, {"tools", Json::array({"calculator", "current_time"})}}}};
  auto r = g->invoke(Input::of({{"messages", Json::array({"hi"})}}), o);
  ASSERT_TRUE(r) << r.error().message;
  const Json& m = r->values["messages"];
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[2]["status"], "error");
  EXPECT_EQ(m[2]["content"], "Error: weather is not a valid tool, try one of [calculator, current_time].");
  EXPECT_EQ(m[3]["status"], "error");
  EXPECT_NE(m[3]["content"].get<std::string>().find("division by zero"), std::string::npos);
  EXPECT_EQ(m[4]["content"], "sorry");
}

// The `events` stream mode's view of the calls: LangChain's on_chat_model_* and on_tool_*.
TEST(AgentNodes, ModelAndToolCallsAreReportedAsCallEvents) {
  auto g = compile(kReact);
  auto svc = std::make_shared<FakeServices>(Json::parse(R"([
    {"content": "", "tool_calls": [{"name": "calculator", "args": {"expression": "6 * 7"}, "id": "a"},
                                   {"name": "calculator", "args": {"expression": "1/0"}, "id": "b"},
                                   {"name": "weather", "args": {}, "id": "c"}]},
    "It is 42."])"));
  RunOptions o;
  o.scope = svc;
  o.config = {{"configurable", {{"model", "scripted-1"}, {"tools", Json::array({"calculator"})}}}};
  struct Seen {
    std::string node, task_id, event, name, run_id;
    Json data, metadata;
  };
  std::vector<Seen> seen;
  o.on_call_event = [&](const ChunkSource& from, const CallEvent& e) {
    seen.push_back({from.node, from.task_id, std::string(e.event), e.name, e.run_id, e.data, e.metadata});
  };
  auto r = g->invoke(Input::of({{"messages", Json::array({"what is 6*7?"})}}), o);
  ASSERT_TRUE(r) << r.error().message;
  const Json& m = r->values["messages"];
  ASSERT_EQ(m.size(), 6u) << m.dump(2);
  std::vector<std::string> order;
  for (const auto& s : seen) order.push_back(s.event + ":" + s.name);
  // The unknown tool is never called: no events for it (as LangGraph's ToolNode).
  EXPECT_EQ(order, (std::vector<std::string>{
                       "on_chat_model_start:ScriptedChatModel", "on_chat_model_stream:ScriptedChatModel",
                       "on_chat_model_end:ScriptedChatModel", "on_tool_start:calculator", "on_tool_end:calculator",
                       "on_tool_start:calculator", "on_tool_error:calculator", "on_chat_model_start:ScriptedChatModel",
                       "on_chat_model_stream:ScriptedChatModel", "on_chat_model_stream:ScriptedChatModel",
                       "on_chat_model_stream:ScriptedChatModel", "on_chat_model_end:ScriptedChatModel"}));
  ASSERT_EQ(seen.size(), order.size());
  // A model call: one run id for its events, the message's id; the input as LangChain gives it.
  const Seen& start = seen[0];
  EXPECT_EQ(start.node, "agent");
  EXPECT_EQ("run-" + start.run_id, m[1]["id"]);
  EXPECT_EQ(seen[2].run_id, start.run_id);
  EXPECT_EQ(start.metadata["ls_provider"], "scripted");
  EXPECT_EQ(start.metadata["ls_model_name"], "scripted-react");
  EXPECT_EQ(start.metadata["ls_model_type"], "chat");
  const Json& sent = start.data["input"]["messages"];
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_EQ(sent[0].size(), 2u) << sent.dump();
  EXPECT_EQ(sent[0][0]["type"], "system");
  EXPECT_EQ(sent[0][0]["content"], "You are terse.");
  EXPECT_EQ(sent[0][1]["content"], "what is 6*7?");
  EXPECT_EQ(seen[1].data["chunk"]["tool_call_chunks"].size(), 3u);  // the tool calls' chunk
  EXPECT_EQ(seen[2].data["output"], m[1]);
  EXPECT_EQ(seen[2].data["input"], start.data["input"]);
  // Tool calls: the arguments in, the tool message out (or the error), their own run ids.
  EXPECT_EQ(seen[3].node, "tools");
  EXPECT_NE(seen[3].task_id, start.task_id);
  EXPECT_EQ(seen[3].data["input"], (Json{{"expression", "6 * 7"}}));
  EXPECT_EQ(seen[4].run_id, seen[3].run_id);
  EXPECT_NE(seen[5].run_id, seen[3].run_id);
  EXPECT_EQ(seen[4].data["output"], m[2]);
  EXPECT_TRUE(seen[4].metadata.is_null());
  EXPECT_NE(seen[6].data["error"].get<std::string>().find("division by zero"), std::string::npos);
  EXPECT_EQ(seen[6].data["input"], (Json{{"expression", "1/0"}}));
  // The answer streamed word by word, then ended with the whole message.
  std::string text;
  for (size_t i = 8; i < 11; ++i) text += seen[i].data["chunk"]["content"].get<std::string>();
  EXPECT_EQ(text, "It is 42.");
  EXPECT_EQ(seen[11].data["output"], m[5]);
  EXPECT_EQ(svc->infos, 2);
  // Nobody listening: no model lookups for it.
  RunOptions quiet = o;
  quiet.on_call_event = nullptr;
  ASSERT_TRUE(g->invoke(Input::of({{"messages", Json::array({"again"})}}), quiet));
  EXPECT_EQ(svc->infos, 2);
}

TEST(AgentNodes, ModelErrorsFailTheNodeWithAClearMessage) {
  auto g = compile(kReact);
  auto svc = std::make_shared<FakeServices>(Json::array({"x"}));
  RunOptions o;
  o.scope = svc;
  o.config = {{"configurable", {{"model", "gpt-nope"}}}};
  auto r = g->invoke(Input::of({{"messages", Json::array({"hi"})}}), o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kNotFound);
  o.config = Json::object();
  r = g->invoke(Input::of({{"messages", Json::array({"hi"})}}), o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("config.configurable.model"), std::string::npos) << r.error().message;
  // Without the platform's services (e.g. compiled by a tool), the node says why it cannot run.
  RunOptions bare;
  bare.config = {{"configurable", {{"model", "scripted-1"}}}};
  r = g->invoke(Input::of({{"messages", Json::array({"hi"})}}), bare);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
}

TEST(AgentNodes, PromptTemplatesOverTheState) {
  auto g = compile(R"({
    "channels": {"topic": "last_value", "messages": "messages"},
    "nodes": {"write": {"kind": "llm", "model": "scripted-1", "system": {"template": "Write about {{topic}}."},
                        "prompt": {"template": "One line on {{topic}}, please."}, "max_tokens": 50}},
    "edges": [["__start__", "write"], ["write", "__end__"]]})");
  ASSERT_TRUE(g);
  auto svc = std::make_shared<FakeServices>(Json::array({"Echo: {{last_user}}"}));
  RunOptions o;
  o.scope = svc;
  auto r = g->invoke(Input::of({{"topic", "otters"}}), o);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(svc->calls.size(), 1u);
  EXPECT_EQ(svc->calls[0].messages[0].content, "Write about otters.");
  EXPECT_EQ(svc->calls[0].messages[1].content, "One line on otters, please.");
  EXPECT_EQ(svc->calls[0].max_tokens, 50);
  EXPECT_EQ(r->values["messages"][0]["content"], "Echo: One line on otters, please.");
}

TEST(AgentNodes, SpecProblemsAreListed) {
  auto c = compile_spec(Json::parse(R"({
    "channels": {"messages": "messages"},
    "nodes": {"a": {"kind": "llm", "messages": "msgs", "tools": ["calculator", "teleport", {"name": "w", "http": {"url": "ftp://x"}},
                                                                {"name": "code", "network": "yes"}],
                    "max_tokens": 0},
              "t": {"kind": "tools", "tools": ["code"]},
              "c": {"kind": "code", "language": "cobol", "timeout_s": 0, "network": 1}},
    "edges": [["__start__", "a"], ["a", "t"], ["t", "c"], ["c", "__end__"]]})"),
                        all_kinds());
  ASSERT_FALSE(c);
  const std::string& m = c.error().message;
  for (const char* want : {"'model'", "unknown channel 'msgs'", "unknown built-in tool 'teleport'", "http.url",
                           "max_tokens", "unknown language 'cobol'", "'source'", "'timeout_s'", "(code): 'network'",
                           "'network' must be true or false"})
    EXPECT_NE(m.find(want), std::string::npos) << want << " in " << m;
}

TEST(Tools, Calculator) {
  EXPECT_EQ(*calculate("1 + 2 * 3"), 7);
  EXPECT_EQ(*calculate("(1 + 2) * 3"), 9);
  EXPECT_EQ(*calculate("2 ^ 3 ^ 2"), 512);
  EXPECT_EQ(*calculate("-2 ** 2"), -4);
  EXPECT_EQ(*calculate("2 ** -1"), 0.5);
  EXPECT_EQ(*calculate("10 % 4 + sqrt(16) + max(1, 7, 3) + abs(-2)"), 15);
  EXPECT_NEAR(*calculate("2 * pi"), 6.283185307, 1e-9);
  EXPECT_EQ(*calculate("1.5e3 / 3"), 500);
  for (const char* bad : {"", "1 +", "(1", "1 / 0", "foo(1)", "2 $ 3", "sqrt(1, 2)", "1e999"})
    EXPECT_FALSE(calculate(bad)) << bad;
  EXPECT_FALSE(calculate(std::string(300, '(') + "1" + std::string(300, ')')));  // depth bound
}

TEST(Tools, HttpToolsFillTheUrlAndNameTheCredential) {
  auto tools = parse_tools(Json::parse(R"([{"name": "weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "units": {"type": "string"}}},
    "http": {"method": "GET", "url": "https://api.example.test/v1/weather/{city}",
             "headers": {"accept": "application/json"},
             "credential": {"name": "weather-key", "header": "x-api-key"}}}])"));
  ASSERT_TRUE(tools) << tools.error().message;
  FakeServices svc(Json::array());
  auto o = run_tool((*tools)[0], {{"city", "São Paulo"}, {"units", "metric"}}, &svc);
  EXPECT_FALSE(o.error) << o.content;
  EXPECT_EQ(o.content, R"({"temp": 21})");
  ASSERT_EQ(svc.http_calls.size(), 1u);
  EXPECT_EQ(svc.http_calls[0].url, "https://api.example.test/v1/weather/S%C3%A3o%20Paulo?units=metric");
  EXPECT_EQ(svc.http_calls[0].credential, "weather-key");
  EXPECT_EQ(svc.http_calls[0].credential_header, "x-api-key");
  EXPECT_EQ(svc.http_calls[0].credential_prefix, "");
  // Errors go back to the model as text.
  auto missing = run_tool((*tools)[0], Json::object(), &svc);
  EXPECT_TRUE(missing.error);
  EXPECT_EQ(missing.content, "Error: missing argument 'city'");
  for (const char* walk : {"..", ".", ""}) {
    auto up = run_tool((*tools)[0], {{"city", walk}}, &svc);
    EXPECT_TRUE(up.error) << walk;
  }
  auto slash = run_tool((*tools)[0], {{"city", "../admin?x=1#y"}}, &svc);
  EXPECT_EQ(svc.http_calls.back().url, "https://api.example.test/v1/weather/..%2Fadmin%3Fx%3D1%23y");
  EXPECT_FALSE(slash.error);
  for (const char* bad : {R"([{"name": "x", "http": {"url": "https://api.example.com{sub}/x", "credential": "k"}}])",
                          R"([{"name": "x", "http": {"url": "https://{host}/x"}}])",
                          R"([{"name": "x", "http": {"url": "https://h.test:{port}/x"}}])"})
    EXPECT_FALSE(parse_tools(Json::parse(bad))) << bad;
  auto t2 = parse_tools(Json::parse(R"([{"name": "p", "http": {"method": "POST", "url": "http://denied.test/x"}},
                                        {"name": "q", "http": {"url": "http://h.test/missing"}}])"));
  ASSERT_TRUE(t2);
  auto denied = run_tool((*t2)[0], {{"a", 1}}, &svc);
  EXPECT_TRUE(denied.error);
  EXPECT_NE(denied.content.find("egress policy"), std::string::npos);
  EXPECT_EQ(svc.http_calls.back().body, R"({"a":1})");
  auto notfound = run_tool((*t2)[1], Json::object(), &svc);
  EXPECT_TRUE(notfound.error);
  EXPECT_EQ(notfound.content.rfind("Error: HTTP 404", 0), 0u);
}

TEST(Tools, CurrentTime) {
  auto tools = parse_tools(Json::array({"current_time"}));
  ASSERT_TRUE(tools);
  auto ok = run_tool((*tools)[0], {{"timezone", "Asia/Kolkata"}}, nullptr);
  EXPECT_FALSE(ok.error);
  EXPECT_NE(ok.content.find("+05:30"), std::string::npos) << ok.content;
  auto bad = run_tool((*tools)[0], {{"timezone", "Mars/Olympus"}}, nullptr);
  EXPECT_TRUE(bad.error);
}

TEST(Messages, Conversions) {
  auto m = to_chat_message(Json::parse(R"({"type": "ai", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]})"));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->role, "assistant");
  EXPECT_EQ(m->content, "ab");
  ASSERT_EQ(m->tool_calls.size(), 1u);
  EXPECT_EQ(m->tool_calls[0].args["x"], 1);
  EXPECT_FALSE(to_chat_message(Json{{"type", "tool"}, {"content", "x"}}));  // no tool_call_id
  EXPECT_FALSE(to_chat_message(Json{{"type", "banana"}}));
}

TEST(CodeNode, TheStateGoesInAsJsonAndThePrintedObjectIsTheUpdate) {
  if (::geteuid() != 0) GTEST_SKIP() << "the sandbox needs root here (cgroups; CI runs as root)";
  auto g = compile(R"json({
    "channels": {"numbers": "last_value", "total": "last_value", "who": "last_value"},
    "nodes": {"sum": {"kind": "code", "language": "python",
                      "source": "import json, sys\nstate = json.load(sys.stdin)\nprint(json.dumps({'total': sum(state['numbers'])}))"},
              "shell": {"kind": "code", "language": "shell", "input": {"from": "total"},
                        "source": "read t; echo \"{\\\"who\\\": \\\"shell saw $t\\\"}\""}},
    "edges": [["__start__", "sum"], ["sum", "shell"], ["shell", "__end__"]]})json");
  ASSERT_TRUE(g);
  auto svc = std::make_shared<FakeServices>(Json::array());
  RunOptions o;
  o.scope = svc;
  auto r = g->invoke(Input::of({{"numbers", {1, 2, 3, 4}}}), o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["total"], 10) << r->values.dump();
  EXPECT_EQ(r->values["who"], "shell saw 10");
  ASSERT_EQ(svc->code_specs.size(), 2u);
  EXPECT_EQ(svc->code_specs[0].argv[0], "python3");
  EXPECT_EQ(svc->code_specs[1].stdin_data, "10");
}

TEST(CodeNode, AFailureIsTheNodesErrorWithTheEndOfStderr) {
  if (::geteuid() != 0) GTEST_SKIP() << "the sandbox needs root here (cgroups; CI runs as root)";
  auto g = compile(R"json({"channels": {"x": "last_value"},
    "nodes": {"bad": {"kind": "code", "source": "import sys\nprint('it broke', file=sys.stderr)\nsys.exit(4)"}},
    "edges": [["__start__", "bad"], ["bad", "__end__"]]})json");
  ASSERT_TRUE(g);
  auto svc = std::make_shared<FakeServices>(Json::array());
  RunOptions o;
  o.scope = svc;
  auto r = g->invoke(Input::of({{"x", 1}}), o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("exited with 4"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("it broke"), std::string::npos) << r.error().message;
}

TEST(CodeTool, RunsTheModelsCodeAndAnswersWithItsOutput) {
  if (::geteuid() != 0) GTEST_SKIP() << "the sandbox needs root here (cgroups; CI runs as root)";
  auto tools = parse_tools(Json::parse(R"(["code"])"));
  ASSERT_TRUE(tools) << tools.error().message;
  ASSERT_EQ(tools->size(), 1u);
  EXPECT_EQ((*tools)[0].spec.parameters["required"][0], "code");
  FakeServices svc(Json::array());
  auto ok = run_tool((*tools)[0], Json{{"language", "python"}, {"code", "print(6 * 7)"}}, &svc);
  EXPECT_FALSE(ok.error);
  EXPECT_EQ(ok.content, "42\n");
  auto bad = run_tool((*tools)[0], Json{{"language", "shell"}, {"code", "echo half; exit 3"}}, &svc);
  EXPECT_TRUE(bad.error);
  EXPECT_NE(bad.content.find("half"), std::string::npos);
  EXPECT_NE(bad.content.find("[exited with 3]"), std::string::npos) << bad.content;
  auto lang = run_tool((*tools)[0], Json{{"language", "cobol"}, {"code", "x"}}, &svc);
  EXPECT_TRUE(lang.error);
  EXPECT_NE(lang.content.find("unknown language"), std::string::npos);
}

}  // namespace
}  // namespace ap::graph::nodes
