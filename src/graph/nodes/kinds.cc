#include "graph/nodes/kinds.h"


#include "common/ids.h"
#include "graph/nodes/code.h"
#include "graph/nodes/messages.h"
#include "graph/nodes/run_services.h"
#include "graph/nodes/tools.h"

namespace ap::graph::nodes {
namespace {

RunServices* services_of(const NodeContext& c) { return dynamic_cast<RunServices*>(c.scope()); }

// A channel name field (default `fallback`) that must name a state channel.
std::string channel_field(const NodeSpecContext& ctx, const char* field, const std::string& fallback) {
  const Json v = ctx.spec.value(field, Json(fallback));
  if (!v.is_string()) {
    ctx.problem(std::string("'") + field + "' must be a channel name");
    return fallback;
  }
  const std::string name = v.get<std::string>();
  if (!ctx.channels.count(name)) ctx.problem(std::string("'") + field + "' names unknown channel '" + name + "'");
  return name;
}

// `tools`: a literal list (checked now) or a value expression (checked when the node runs).
Json tools_field(const NodeSpecContext& ctx) {
  Json t = ctx.spec.value("tools", Json());
  if (t.is_array()) {
    if (auto parsed = parse_tools(t); !parsed) ctx.problem(parsed.error().message);
  } else if (t.is_object()) {
    ctx.check_value(t);
  } else if (!t.is_null()) {
    ctx.problem("'tools' must be a list of tools or a value expression");
  }
  return t;
}

Result<std::vector<ToolDef>> eval_tools(NodeContext& c, const Json& expr) {
  if (expr.is_null()) return std::vector<ToolDef>{};
  AP_ASSIGN_OR_RETURN(Json list, eval_value(c, expr));
  auto tools = parse_tools(list);
  if (!tools) return Error::invalid_argument("node '" + c.node() + "': " + tools.error().message);
  return tools;
}

// The messages of a channel as a list (a single message, or nothing, count too).
Json messages_in(const NodeContext& c, const std::string& channel) {
  Json v = c.get(channel);
  if (v.is_null()) return Json::array();
  if (!v.is_array()) return Json::array({v});
  return v;
}

// One model call as the `events` stream mode shows it: LangChain's on_chat_model_start, a
// _stream per chunk and _end, named after the provider and with LangChain's ls_* metadata.
// Does nothing when nobody streams `events`.
class ModelCallEvents {
 public:
  ModelCallEvents(NodeContext& c, RunServices& svc, const std::string& model, const std::string& run_id)
      : c_(c), svc_(svc), model_(model), run_id_(run_id), on_(c.wants_call_events()) {}
  bool on() const { return on_; }

  // The input as LangChain gives it: {messages: [[the messages sent]]}.
  void start(Json messages, const Json& system, const Json& prompt, std::optional<int64_t> max_tokens,
             std::optional<double> temperature) {
    auto text = [](const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
    if (!system.is_null()) messages.insert(messages.begin(), Json{{"type", "system"}, {"content", text(system)}});
    if (!prompt.is_null()) messages.push_back(Json{{"type", "human"}, {"content", text(prompt)}});
    input_ = Json{{"messages", Json::array({std::move(messages)})}};
    metadata_ = Json{{"ls_model_type", "chat"}};
    if (auto info = svc_.model_info(model_)) {
      metadata_["ls_provider"] = info->provider;
      metadata_["ls_model_name"] = info->upstream_model;
      name_ = info->provider == "openai"      ? "ChatOpenAI"
              : info->provider == "anthropic" ? "ChatAnthropic"
              : info->provider == "scripted"  ? "ScriptedChatModel"
                                              : model_;
    }
    if (temperature) metadata_["ls_temperature"] = *temperature;
    if (max_tokens) metadata_["ls_max_tokens"] = *max_tokens;
    emit("on_chat_model_start", Json{{"input", input_}});
  }
  void stream(const Json& chunk) {
    if (on_) emit("on_chat_model_stream", Json{{"chunk", chunk}});
  }
  void end(const Json& message) {
    if (on_) emit("on_chat_model_end", Json{{"output", message}, {"input", input_}});
  }

 private:
  void emit(std::string_view event, Json data) { c_.call_event(CallEvent{event, name_, run_id_, std::move(data), metadata_}); }
  NodeContext& c_;
  RunServices& svc_;
  const std::string& model_;
  const std::string& run_id_;
  const bool on_;
  std::string name_ = model_;
  Json input_, metadata_;
};

BuiltNode llm_kind(const NodeSpecContext& ctx) {
  BuiltNode b;
  const Json model = ctx.spec.value("model", Json());
  if (model.is_string()) {
    if (model.get<std::string>().empty()) ctx.problem("'model' must not be empty");
  } else if (model.is_object()) {
    ctx.check_value(model);
  } else {
    ctx.problem("'model' (a model route's name, or a value expression such as {\"from\": \"$config.configurable.model\"}) is required");
  }
  const std::string input = channel_field(ctx, "messages", "messages");
  const std::string output = channel_field(ctx, "output", input);
  const Json system = ctx.spec.value("system", Json());
  const Json prompt = ctx.spec.value("prompt", Json());
  ctx.check_value(system);
  ctx.check_value(prompt);
  const Json tools = tools_field(ctx);
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature;
  if (ctx.spec.contains("max_tokens")) {
    const Json& m = ctx.spec["max_tokens"];
    if (!m.is_number_integer() || m.get<int64_t>() < 1) ctx.problem("'max_tokens' must be a positive integer");
    else max_tokens = m.get<int64_t>();
  }
  if (ctx.spec.contains("temperature")) {
    const Json& t = ctx.spec["temperature"];
    if (!t.is_number() || t.get<double>() < 0 || t.get<double>() > 2) ctx.problem("'temperature' must be a number from 0 to 2");
    else temperature = t.get<double>();
  }
  b.fn = [=](NodeContext& c) -> Result<NodeOutput> {
    RunServices* svc = services_of(c);
    if (!svc) return Error::failed_precondition("node '" + c.node() + "': llm nodes run on the platform's workers (no model services here)");
    AP_ASSIGN_OR_RETURN(Json name, eval_value(c, model));
    if (!name.is_string() || name.get<std::string>().empty())
      return Error::invalid_argument("node '" + c.node() + "': no model to call (set the assistant's config.configurable.model "
                                     "to one of the tenant's model routes)");
    AP_ASSIGN_OR_RETURN(auto defs, eval_tools(c, tools));
    llm::ChatCall call;
    call.max_tokens = max_tokens;
    call.temperature = temperature;
    AP_ASSIGN_OR_RETURN(Json sys, eval_value(c, system));
    if (!sys.is_null()) call.messages.push_back({"system", sys.is_string() ? sys.get<std::string>() : sys.dump(), {}, "", ""});
    const Json history = messages_in(c, input);
    for (const auto& m : history) {
      auto msg = to_chat_message(m);
      if (!msg) return Error::invalid_argument("node '" + c.node() + "': " + msg.error().message);
      call.messages.push_back(std::move(*msg));
    }
    AP_ASSIGN_OR_RETURN(Json p, eval_value(c, prompt));
    if (!p.is_null()) call.messages.push_back({"user", p.is_string() ? p.get<std::string>() : p.dump(), {}, "", ""});
    if (call.messages.empty()) return Error::invalid_argument("node '" + c.node() + "': no messages to send to the model");
    for (const auto& d : defs) call.tools.push_back(d.spec);
    const std::string run_id = Uuid::random_v4().to_string(), id = "run-" + run_id;
    const std::string model_name = name.get<std::string>();
    ModelCallEvents events(c, *svc, model_name, run_id);
    if (events.on()) events.start(history, sys, p, max_tokens, temperature);
    auto chunk = [&](const Json& piece) {
      c.stream_message_chunk(piece);
      events.stream(piece);
    };
    llm::OnDelta on_delta = [&](std::string_view text) {
      if (!text.empty()) chunk(ai_chunk(id, text));
    };
    AP_ASSIGN_OR_RETURN(llm::ChatResult r, svc->chat(model_name, std::move(call), on_delta));
    if (!r.message.tool_calls.empty()) chunk(ai_tool_call_chunk(id, r));
    Json message = ai_message(r, id, model_name);
    events.end(message);
    NodeOutput out;
    out.write(output, Json::array({std::move(message)}));
    return out;
  };
  return b;
}

BuiltNode tools_kind(const NodeSpecContext& ctx) {
  BuiltNode b;
  const std::string channel = channel_field(ctx, "messages", "messages");
  const Json tools = tools_field(ctx);
  b.fn = [=](NodeContext& c) -> Result<NodeOutput> {
    AP_ASSIGN_OR_RETURN(auto defs, eval_tools(c, tools));
    const Json msgs = messages_in(c, channel);
    NodeOutput out;
    if (msgs.empty()) return out;
    const Json& last = msgs.back();
    auto ai = to_chat_message(last);
    if (!ai || ai->role != "assistant" || ai->tool_calls.empty()) return out;  // nothing to do
    Json results = Json::array();
    const bool traced = c.wants_call_events();
    for (const auto& call : ai->tool_calls) {
      const ToolDef* def = nullptr;
      for (const auto& d : defs)
        if (d.spec.name == call.name) def = &d;
      if (!def) {
        std::string known;
        for (const auto& d : defs) known += (known.empty() ? "" : ", ") + d.spec.name;
        results.push_back(tool_message(call.id, call.name,
                                       "Error: " + call.name + " is not a valid tool, try one of [" + known + "].", "error"));
        continue;
      }
      // The `events` mode sees the call as LangChain's on_tool_start, then _end or _error.
      const std::string run_id = traced ? Uuid::random_v4().to_string() : std::string();
      if (traced) c.call_event(CallEvent{"on_tool_start", call.name, run_id, Json{{"input", call.args}}, nullptr});
      ToolOutcome o = run_tool(*def, call.args, services_of(c));
      const std::string error = o.error ? o.content : std::string();
      Json message = tool_message(call.id, call.name, std::move(o.content), o.error ? "error" : "success");
      if (traced)
        c.call_event(o.error ? CallEvent{"on_tool_error", call.name, run_id, Json{{"error", error}, {"input", call.args}}, nullptr}
                             : CallEvent{"on_tool_end", call.name, run_id, Json{{"output", message}, {"input", call.args}}, nullptr});
      results.push_back(std::move(message));
    }
    out.write(channel, std::move(results));
    return out;
  };
  return b;
}

}  // namespace

void add_agent_kinds(NodeKinds& kinds) { kinds.add("llm", llm_kind).add("tools", tools_kind).add("code", code_kind); }

NodeKinds all_kinds() {
  NodeKinds k = NodeKinds::builtin();
  add_agent_kinds(k);
  return k;
}

}  // namespace ap::graph::nodes
