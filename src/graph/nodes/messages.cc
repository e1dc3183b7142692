#include "graph/nodes/messages.h"

#include "common/ids.h"

namespace ap::graph::nodes {
namespace {

std::string type_of(const Json& m) {
  if (m.contains("type") && m["type"].is_string()) return m["type"];
  if (m.contains("role") && m["role"].is_string()) return m["role"];
  return "";
}

Json empty_chunk(const std::string& id) {
  return Json{{"type", "AIMessageChunk"},   {"id", id},
              {"content", ""},              {"additional_kwargs", Json::object()},
              {"response_metadata", Json::object()}, {"name", nullptr},
              {"tool_calls", Json::array()}, {"invalid_tool_calls", Json::array()},
              {"tool_call_chunks", Json::array()}, {"usage_metadata", nullptr}};
}

}  // namespace

std::string text_of(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array())
    for (const auto& b : content) {
      if (b.is_string()) out += b.get<std::string>();
      else if (b.is_object() && b.value("type", "") == "text" && b.contains("text") && b["text"].is_string())
        out += b["text"].get<std::string>();
    }
  return out;
}

Result<llm::Message> to_chat_message(const Json& m) {
  if (m.is_string()) return llm::Message{"user", m.get<std::string>(), {}, "", ""};
  if (!m.is_object()) return Error::invalid_argument("a message must be an object");
  const std::string type = type_of(m);
  llm::Message out;
  out.content = text_of(m.value("content", Json("")));
  if (type == "human" || type == "user") {
    out.role = "user";
  } else if (type == "system" || type == "developer") {
    out.role = "system";
  } else if (type == "ai" || type == "assistant" || type == "AIMessageChunk") {
    out.role = "assistant";
    const Json calls = m.value("tool_calls", Json::array());
    if (!calls.is_array()) return Error::invalid_argument("an AI message's tool_calls must be a list");
    for (const auto& c : calls) {
      if (!c.is_object()) return Error::invalid_argument("a tool call must be an object");
      llm::ToolCall tc;
      tc.id = c.value("id", "");
      if (c.contains("function") && c["function"].is_object()) {  // OpenAI's shape
        tc.name = c["function"].value("name", "");
        Json args = Json::parse(c["function"].value("arguments", "{}"), nullptr, false);
        tc.args = args.is_object() ? args : Json::object();
      } else {
        tc.name = c.value("name", "");
        tc.args = c.value("args", Json::object());
      }
      if (tc.name.empty()) return Error::invalid_argument("a tool call needs a name");
      out.tool_calls.push_back(std::move(tc));
    }
  } else if (type == "tool") {
    out.role = "tool";
    out.tool_call_id = m.value("tool_call_id", "");
    out.name = m.contains("name") && m["name"].is_string() ? m["name"].get<std::string>() : "";
    if (out.tool_call_id.empty()) return Error::invalid_argument("a tool message needs tool_call_id");
  } else {
    return Error::invalid_argument("a model cannot take a message of type '" + type + "'");
  }
  return out;
}

Json ai_message(const llm::ChatResult& r, const std::string& id, const std::string& model) {
  Json calls = Json::array();
  for (const auto& c : r.message.tool_calls)
    calls.push_back({{"name", c.name}, {"args", c.args}, {"id", c.id}, {"type", "tool_call"}});
  const auto& u = r.usage;
  return Json{{"type", "ai"},
              {"id", id},
              {"content", r.message.content},
              {"tool_calls", calls},
              {"invalid_tool_calls", Json::array()},
              {"additional_kwargs", Json::object()},
              {"response_metadata", {{"model_name", model}, {"finish_reason", r.finish_reason}}},
              {"usage_metadata",
               {{"input_tokens", u.prompt_tokens},
                {"output_tokens", u.completion_tokens},
                {"total_tokens", u.prompt_tokens + u.completion_tokens},
                {"input_token_details", {{"cache_read", u.cached_tokens}}},
                {"output_token_details", {{"reasoning", u.reasoning_tokens}}}}},
              {"name", nullptr}};
}

Json ai_chunk(const std::string& id, std::string_view text) {
  Json c = empty_chunk(id);
  c["content"] = std::string(text);
  return c;
}

Json ai_tool_call_chunk(const std::string& id, const llm::ChatResult& r) {
  Json c = empty_chunk(id);
  int index = 0;
  for (const auto& t : r.message.tool_calls) {
    c["tool_calls"].push_back({{"name", t.name}, {"args", t.args}, {"id", t.id}, {"type", "tool_call"}});
    c["tool_call_chunks"].push_back(
        {{"name", t.name}, {"args", t.args.dump()}, {"id", t.id}, {"index", index++}, {"type", "tool_call_chunk"}});
  }
  c["response_metadata"] = {{"finish_reason", r.finish_reason}};
  return c;
}

Json tool_message(const std::string& tool_call_id, const std::string& name, std::string content,
                  const std::string& status) {
  return Json{{"type", "tool"},
              {"id", "run-" + Uuid::random_v4().to_string()},
              {"content", std::move(content)},
              {"tool_call_id", tool_call_id},
              {"name", name},
              {"status", status},
              {"additional_kwargs", Json::object()},
              {"response_metadata", Json::object()}};
}

}  // namespace ap::graph::nodes
