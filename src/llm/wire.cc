// Provider-neutral chat types <-> the OpenAI and Anthropic wire formats; token estimates; upstream
// error mapping.
#include "llm/chat.h"

namespace ap::llm {

int64_t estimate_tokens(std::string_view text) {
  if (text.empty()) return 0;
  return static_cast<int64_t>((text.size() + 3) / 4);
}

int64_t upper_bound_tokens(std::string_view text) { return static_cast<int64_t>(text.size()); }

int64_t upper_bound_prompt_tokens(const ChatCall& call) {
  int64_t n = 16;
  for (const auto& m : call.messages) {
    n += 8 + upper_bound_tokens(m.content);
    for (const auto& tc : m.tool_calls) n += upper_bound_tokens(tc.name) + upper_bound_tokens(tc.args.dump());
  }
  for (const auto& t : call.tools)
    n += upper_bound_tokens(t.name) + upper_bound_tokens(t.description) + upper_bound_tokens(t.parameters.dump());
  return n;
}

int64_t estimate_prompt_tokens(const ChatCall& call) {
  int64_t n = 3;  // reply priming
  for (const auto& m : call.messages) {
    n += 4 + estimate_tokens(m.content);
    for (const auto& tc : m.tool_calls) n += estimate_tokens(tc.name) + estimate_tokens(tc.args.dump());
  }
  for (const auto& t : call.tools) n += estimate_tokens(t.name) + estimate_tokens(t.description) + estimate_tokens(t.parameters.dump());
  return n;
}

Error upstream_error(int status, std::string_view body, std::string_view provider) {
  std::string message;
  auto j = Json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    auto e = j.find("error");
    if (e != j.end() && e->is_object() && e->contains("message") && (*e)["message"].is_string())
      message = (*e)["message"].get<std::string>();
    else if (e != j.end() && e->is_string())
      message = e->get<std::string>();
  }
  if (status == 401 || status == 403) message = "the provider rejected the credential";  // may echo part of the key
  if (message.size() > 500) message.resize(500);
  std::string what = std::string(provider) + " upstream returned " + std::to_string(status) +
                     (message.empty() ? "" : ": " + message);
  if (status == 429) return Error::resource_exhausted(what);
  if (status == 401 || status == 403) return Error::permission_denied(what);
  if (status == 404) return Error::not_found(what);
  if (status == 408 || status == 504) return Error::deadline_exceeded(what);
  if (status >= 400 && status < 500) return Error::invalid_argument(what);
  return Error::unavailable(what);
}

// ---- OpenAI ----

Json openai_message(const Message& m) {
  Json out = {{"role", m.role}};
  if (m.role == "assistant") {
    out["content"] = m.content.empty() && !m.tool_calls.empty() ? Json(nullptr) : Json(m.content);
    if (!m.tool_calls.empty()) {
      Json calls = Json::array();
      for (const auto& tc : m.tool_calls)
        calls.push_back({{"id", tc.id}, {"type", "function"}, {"function", {{"name", tc.name}, {"arguments", tc.args.dump()}}}});
      out["tool_calls"] = std::move(calls);
    }
  } else {
    out["content"] = m.content;
    if (m.role == "tool") out["tool_call_id"] = m.tool_call_id;
  }
  return out;
}

namespace {

// Text of a content that is a string or an array of parts ({type: text, text}).
Result<std::string> text_of(const Json& content, const char* where) {
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Error::invalid_argument(std::string(where) + ": content must be a string or an array of parts");
  std::string out;
  for (const auto& part : content) {
    if (part.is_string()) {
      out += part.get<std::string>();
    } else if (part.is_object() && part.value("type", "") == "text" && part.contains("text") && part["text"].is_string()) {
      out += part["text"].get<std::string>();
    } else if (part.is_object() && part.value("type", "") == "tool_result") {
      continue;  // handled by the caller
    } else if (part.is_object() && part.contains("type") && part["type"].is_string()) {
      continue;  // images and other parts: not forwarded by the neutral form
    } else {
      return Error::invalid_argument(std::string(where) + ": a content part must be an object with a type");
    }
  }
  return out;
}

Json parse_args(const Json& raw) {
  if (raw.is_object()) return raw;
  if (raw.is_string()) {
    auto j = Json::parse(raw.get<std::string>(), nullptr, false);
    if (!j.is_discarded() && j.is_object()) return j;
    if (raw.get<std::string>().empty()) return Json::object();
  }
  return Json{{"input", raw}};
}

}  // namespace

Result<Message> message_from_openai(const Json& m) {
  if (!m.is_object()) return Error::invalid_argument("each message must be an object");
  Message out;
  out.role = m.value("role", "");
  if (out.role == "developer") out.role = "system";
  if (out.role != "system" && out.role != "user" && out.role != "assistant" && out.role != "tool")
    return Error::invalid_argument("message role must be system, developer, user, assistant or tool");
  AP_ASSIGN_OR_RETURN(out.content, text_of(m.contains("content") ? m["content"] : Json(), "message"));
  if (auto tc = m.find("tool_calls"); tc != m.end() && tc->is_array()) {
    for (const auto& c : *tc) {
      if (!c.is_object() || !c.contains("function") || !c["function"].is_object())
        return Error::invalid_argument("tool_calls[] must be objects with a function");
      out.tool_calls.push_back({c.value("id", ""), c["function"].value("name", ""),
                                parse_args(c["function"].contains("arguments") ? c["function"]["arguments"] : Json())});
    }
  }
  if (out.role == "tool") out.tool_call_id = m.value("tool_call_id", "");
  if (m.contains("name") && m["name"].is_string()) out.name = m["name"].get<std::string>();
  return out;
}

Result<ChatCall> call_from_openai(const Json& body) {
  ChatCall call;
  if (!body.contains("model") || !body["model"].is_string()) return Error::invalid_argument("model is required and must be a string");
  call.model = body["model"].get<std::string>();
  auto msgs = body.find("messages");
  if (msgs == body.end() || !msgs->is_array() || msgs->empty())
    return Error::invalid_argument("messages is required and must be a non-empty array");
  for (const auto& m : *msgs) {
    AP_ASSIGN_OR_RETURN(auto msg, message_from_openai(m));
    call.messages.push_back(std::move(msg));
  }
  if (auto tools = body.find("tools"); tools != body.end() && !tools->is_null()) {
    if (!tools->is_array()) return Error::invalid_argument("tools must be an array");
    for (const auto& t : *tools) {
      if (!t.is_object() || !t.contains("function") || !t["function"].is_object() || !t["function"].contains("name"))
        return Error::invalid_argument("tools[] must be {type: function, function: {name, parameters}}");
      const auto& f = t["function"];
      call.tools.push_back({f.value("name", ""), f.value("description", ""), f.value("parameters", Json::object())});
    }
  }
  for (const char* k : {"max_completion_tokens", "max_tokens"}) {
    if (body.contains(k) && !body[k].is_null()) {
      if (!body[k].is_number_integer() || body[k].get<int64_t>() < 1)
        return Error::invalid_argument(std::string(k) + " must be a positive integer");
      call.max_tokens = body[k].get<int64_t>();
      break;
    }
  }
  if (body.contains("temperature") && body["temperature"].is_number()) call.temperature = body["temperature"].get<double>();
  return call;
}

// ---- Anthropic ----

Result<ChatCall> call_from_anthropic(const Json& body) {
  ChatCall call;
  if (!body.contains("model") || !body["model"].is_string()) return Error::invalid_argument("model: field required");
  call.model = body["model"].get<std::string>();
  if (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer() || body["max_tokens"].get<int64_t>() < 1)
    return Error::invalid_argument("max_tokens: field required (a positive integer)");
  call.max_tokens = body["max_tokens"].get<int64_t>();
  if (auto s = body.find("system"); s != body.end() && !s->is_null()) {
    AP_ASSIGN_OR_RETURN(auto sys, text_of(*s, "system"));
    call.messages.push_back({"system", sys, {}, "", ""});
  }
  auto msgs = body.find("messages");
  if (msgs == body.end() || !msgs->is_array() || msgs->empty())
    return Error::invalid_argument("messages: field required (a non-empty array)");
  for (const auto& m : *msgs) {
    if (!m.is_object()) return Error::invalid_argument("messages: each message must be an object");
    std::string role = m.value("role", "");
    if (role != "user" && role != "assistant") return Error::invalid_argument("messages: role must be user or assistant");
    const Json content = m.contains("content") ? m["content"] : Json();
    Message msg{role, "", {}, "", ""};
    AP_ASSIGN_OR_RETURN(msg.content, text_of(content, "messages"));
    if (content.is_array()) {
      for (const auto& block : content) {
        if (!block.is_object()) continue;
        std::string type = block.value("type", "");
        if (type == "tool_use") {
          msg.tool_calls.push_back({block.value("id", ""), block.value("name", ""), block.value("input", Json::object())});
        } else if (type == "tool_result") {
          Message tool{"tool", "", {}, block.value("tool_use_id", ""), ""};
          AP_ASSIGN_OR_RETURN(tool.content, text_of(block.contains("content") ? block["content"] : Json(), "tool_result"));
          call.messages.push_back(std::move(tool));
        }
      }
    }
    if (!msg.content.empty() || !msg.tool_calls.empty()) call.messages.push_back(std::move(msg));
  }
  if (auto tools = body.find("tools"); tools != body.end() && !tools->is_null()) {
    if (!tools->is_array()) return Error::invalid_argument("tools: must be an array");
    for (const auto& t : *tools) {
      if (!t.is_object() || !t.contains("name")) return Error::invalid_argument("tools: each tool needs a name");
      call.tools.push_back({t.value("name", ""), t.value("description", ""), t.value("input_schema", Json::object())});
    }
  }
  if (body.contains("temperature") && body["temperature"].is_number()) call.temperature = body["temperature"].get<double>();
  return call;
}

}  // namespace ap::llm
