// The three providers: OpenAI-compatible chat completions, Anthropic Messages (both streamed over
// SSE), and the scripted model.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>

#include "llm/chat.h"
#include "llm/sse.h"
#include "net/http_client.h"

namespace ap::llm {
namespace asio = boost::asio;

namespace {

std::string join_url(const std::string& base, std::string_view path) {
  std::string b = base;
  while (!b.empty() && b.back() == '/') b.pop_back();
  return b + std::string(path);
}

int64_t num(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// Reads an error response's body (bounded) and maps it.
asio::awaitable<Error> error_of(net::ClientResponse& res, std::string_view provider) {
  auto body = co_await res.read_all(1u << 20);
  co_return upstream_error(res.status(), body ? *body : "", provider);
}

// ---- OpenAI-compatible ----

class OpenAiProvider final : public Provider {
 public:
  explicit OpenAiProvider(Endpoint e) : e_(std::move(e)) {
    e_.base_url = effective_base_url("openai", e_.base_url);
  }

  asio::awaitable<Result<ChatResult>> chat(net::HttpClient& http, const ChatCall& call,
                                           const OnDelta& on_delta) const override {
    Json body = {{"model", call.model}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
    Json msgs = Json::array();
    for (const auto& m : call.messages) msgs.push_back(openai_message(m));
    body["messages"] = std::move(msgs);
    if (!call.tools.empty()) {
      Json tools = Json::array();
      for (const auto& t : call.tools)
        tools.push_back({{"type", "function"},
                         {"function", {{"name", t.name}, {"description", t.description}, {"parameters", t.parameters}}}});
      body["tools"] = std::move(tools);
    }
    if (call.max_tokens) body["max_tokens"] = *call.max_tokens;
    if (call.temperature) body["temperature"] = *call.temperature;
    net::ClientRequest req{"POST", join_url(e_.base_url, "/chat/completions"), {{"accept", "text/event-stream"}}, body.dump()};
    if (!e_.key.empty()) req.headers.emplace_back("authorization", "Bearer " + std::string(e_.key.reveal()));
    auto sent = co_await http.send(std::move(req));
    if (!sent) co_return sent.error();
    auto& res = **sent;
    if (res.status() != 200) co_return co_await error_of(res, "openai");

    ChatResult out;
    out.message.role = "assistant";
    std::map<int64_t, std::pair<ToolCall, std::string>> calls;  // index -> (call, raw arguments)
    bool got_usage = false;
    std::string stream_error;
    auto apply = [&](const Json& chunk) {
      if (chunk.contains("error")) {
        stream_error = chunk["error"].is_object() ? chunk["error"].value("message", "error") : "error";
        return;
      }
      if (out.id.empty() && chunk.contains("id") && chunk["id"].is_string()) out.id = chunk["id"].get<std::string>();
      if (auto u = chunk.find("usage"); u != chunk.end() && u->is_object()) {
        got_usage = true;
        out.usage.prompt_tokens = num(*u, "prompt_tokens");
        out.usage.completion_tokens = num(*u, "completion_tokens");
        if (u->contains("prompt_tokens_details") && (*u)["prompt_tokens_details"].is_object())
          out.usage.cached_tokens = num((*u)["prompt_tokens_details"], "cached_tokens");
        if (u->contains("completion_tokens_details") && (*u)["completion_tokens_details"].is_object())
          out.usage.reasoning_tokens = num((*u)["completion_tokens_details"], "reasoning_tokens");
      }
      auto ch = chunk.find("choices");
      if (ch == chunk.end() || !ch->is_array() || ch->empty()) return;
      const auto& c0 = (*ch)[0];
      if (c0.contains("finish_reason") && c0["finish_reason"].is_string()) out.finish_reason = c0["finish_reason"];
      const Json* d = nullptr;
      if (c0.contains("delta") && c0["delta"].is_object()) d = &c0["delta"];
      else if (c0.contains("message") && c0["message"].is_object()) d = &c0["message"];  // a non-streamed reply
      if (!d) return;
      if (d->contains("content") && (*d)["content"].is_string()) {
        const auto& text = (*d)["content"].get_ref<const std::string&>();
        out.message.content += text;
        if (on_delta && !text.empty()) on_delta(text);
      }
      if (auto tcs = d->find("tool_calls"); tcs != d->end() && tcs->is_array()) {
        int64_t pos = 0;
        for (const auto& tc : *tcs) {
          int64_t idx = tc.contains("index") ? num(tc, "index") : pos;
          ++pos;
          auto& [call_out, raw] = calls[idx];
          if (tc.contains("id") && tc["id"].is_string()) call_out.id = tc["id"];
          if (tc.contains("function") && tc["function"].is_object()) {
            const auto& f = tc["function"];
            if (f.contains("name") && f["name"].is_string()) call_out.name += f["name"].get<std::string>();
            if (f.contains("arguments") && f["arguments"].is_string()) raw += f["arguments"].get<std::string>();
          }
        }
      }
    };
    if (res.header("content-type").starts_with("application/json")) {
      auto all = co_await res.read_all();
      if (!all) co_return all.error();
      auto j = Json::parse(*all, nullptr, false);
      if (j.is_discarded()) co_return Error::unavailable("openai upstream sent malformed JSON");
      apply(j);
    } else {
      SseParser sse;
      bool done = false;
      while (!done) {
        auto piece = co_await res.read();
        if (!piece) co_return piece.error();
        if (piece->empty()) break;
        sse.feed(*piece, [&](std::string_view, std::string_view data) {
          if (data == "[DONE]") {
            done = true;
            return;
          }
          auto j = Json::parse(data, nullptr, false);
          if (!j.is_discarded() && j.is_object()) apply(j);
        });
      }
    }
    if (!stream_error.empty()) co_return Error::unavailable("openai upstream stream failed: " + stream_error);
    for (auto& [idx, cr] : calls) {
      auto& [tc, raw] = cr;
      auto args = raw.empty() ? Json::object() : Json::parse(raw, nullptr, false);
      tc.args = args.is_discarded() ? Json{{"input", raw}} : args;
      out.message.tool_calls.push_back(std::move(tc));
    }
    if (!got_usage) {
      out.usage.prompt_tokens = estimate_prompt_tokens(call);
      out.usage.completion_tokens = estimate_tokens(out.message.content);
      out.usage.estimated = true;
    }
    co_return out;
  }

 private:
  Endpoint e_;
};

// ---- Anthropic Messages ----

Json anthropic_messages(const std::vector<Message>& msgs, std::string& system) {
  Json out = Json::array();
  auto push = [&](const std::string& role, Json block) {
    if (!out.empty() && out.back()["role"] == role) {
      out.back()["content"].push_back(std::move(block));
    } else {
      out.push_back({{"role", role}, {"content", Json::array({std::move(block)})}});
    }
  };
  for (const auto& m : msgs) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n") + m.content;
    } else if (m.role == "tool") {
      push("user", {{"type", "tool_result"}, {"tool_use_id", m.tool_call_id}, {"content", m.content}});
    } else if (m.role == "assistant") {
      if (!m.content.empty()) push("assistant", {{"type", "text"}, {"text", m.content}});
      for (const auto& tc : m.tool_calls)
        push("assistant", {{"type", "tool_use"}, {"id", tc.id}, {"name", tc.name}, {"input", tc.args}});
    } else {
      push("user", {{"type", "text"}, {"text", m.content}});
    }
  }
  return out;
}

class AnthropicProvider final : public Provider {
 public:
  explicit AnthropicProvider(Endpoint e) : e_(std::move(e)) {
    e_.base_url = effective_base_url("anthropic", e_.base_url);
  }

  asio::awaitable<Result<ChatResult>> chat(net::HttpClient& http, const ChatCall& call,
                                           const OnDelta& on_delta) const override {
    std::string system;
    Json body = {{"model", call.model}, {"max_tokens", call.max_tokens.value_or(4096)}, {"stream", true}};
    body["messages"] = anthropic_messages(call.messages, system);
    if (!system.empty()) body["system"] = system;
    if (!call.tools.empty()) {
      Json tools = Json::array();
      for (const auto& t : call.tools)
        tools.push_back({{"name", t.name}, {"description", t.description}, {"input_schema", t.parameters}});
      body["tools"] = std::move(tools);
    }
    if (call.temperature) body["temperature"] = *call.temperature;
    net::ClientRequest req{"POST", join_url(e_.base_url, "/v1/messages"),
                           {{"accept", "text/event-stream"}, {"anthropic-version", "2023-06-01"}}, body.dump()};
    if (!e_.key.empty()) req.headers.emplace_back("x-api-key", std::string(e_.key.reveal()));
    auto sent = co_await http.send(std::move(req));
    if (!sent) co_return sent.error();
    auto& res = **sent;
    if (res.status() != 200) co_return co_await error_of(res, "anthropic");

    ChatResult out;
    out.message.role = "assistant";
    std::map<int64_t, std::pair<ToolCall, std::string>> tools;  // block index -> (tool_use, partial json)
    bool got_usage = false;
    std::string stream_error;
    SseParser sse;
    bool done = false;
    while (!done) {
      auto piece = co_await res.read();
      if (!piece) co_return piece.error();
      if (piece->empty()) break;
      sse.feed(*piece, [&](std::string_view event, std::string_view data) {
        auto j = Json::parse(data, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return;
        if (event == "message_start" && j.contains("message")) {
          const auto& m = j["message"];
          out.id = m.value("id", "");
          if (m.contains("usage") && m["usage"].is_object()) {
            const auto& u = m["usage"];
            got_usage = true;
            out.usage.cached_tokens = num(u, "cache_read_input_tokens");
            out.usage.cache_creation_tokens = num(u, "cache_creation_input_tokens");
            out.usage.prompt_tokens = num(u, "input_tokens") + out.usage.cached_tokens + out.usage.cache_creation_tokens;
            out.usage.completion_tokens = num(u, "output_tokens");
          }
        } else if (event == "content_block_start" && j.contains("content_block")) {
          const auto& b = j["content_block"];
          if (b.value("type", "") == "tool_use") tools[num(j, "index")].first = {b.value("id", ""), b.value("name", ""), Json::object()};
        } else if (event == "content_block_delta" && j.contains("delta")) {
          const auto& d = j["delta"];
          std::string type = d.value("type", "");
          if (type == "text_delta" && d.contains("text") && d["text"].is_string()) {
            const auto& text = d["text"].get_ref<const std::string&>();
            out.message.content += text;
            if (on_delta && !text.empty()) on_delta(text);
          } else if (type == "input_json_delta" && d.contains("partial_json") && d["partial_json"].is_string()) {
            tools[num(j, "index")].second += d["partial_json"].get<std::string>();
          }
        } else if (event == "message_delta") {
          if (j.contains("delta") && j["delta"].is_object() && j["delta"].contains("stop_reason") && j["delta"]["stop_reason"].is_string())
            out.finish_reason = j["delta"]["stop_reason"];
          if (j.contains("usage") && j["usage"].is_object()) {
            got_usage = true;
            out.usage.completion_tokens = num(j["usage"], "output_tokens");  // cumulative
          }
        } else if (event == "message_stop") {
          done = true;
        } else if (event == "error") {
          stream_error = j.contains("error") && j["error"].is_object() ? j["error"].value("message", "error") : "error";
        }
      });
    }
    if (!stream_error.empty()) co_return Error::unavailable("anthropic upstream stream failed: " + stream_error);
    for (auto& [idx, tp] : tools) {
      auto& [tc, raw] = tp;
      if (!raw.empty()) {
        auto args = Json::parse(raw, nullptr, false);
        tc.args = args.is_discarded() ? Json{{"input", raw}} : args;
      }
      out.message.tool_calls.push_back(std::move(tc));
    }
    if (out.finish_reason == "tool_use") out.finish_reason = "tool_calls";
    else if (out.finish_reason == "end_turn") out.finish_reason = "stop";
    if (!got_usage) {
      out.usage.prompt_tokens = estimate_prompt_tokens(call);
      out.usage.completion_tokens = estimate_tokens(out.message.content);
      out.usage.estimated = true;
    }
    co_return out;
  }

 private:
  Endpoint e_;
};

// ---- scripted ----

std::string substitute(std::string text, const ChatCall& call) {
  std::string last, last_user;
  int64_t turns = 0;
  for (const auto& m : call.messages) {
    if (m.role == "user") {
      ++turns;
      last_user = m.content;
    }
    if (m.role != "system") last = m.content;
  }
  auto replace = [&](const std::string& from, const std::string& to) {
    for (size_t p = text.find(from); p != std::string::npos; p = text.find(from, p + to.size())) text.replace(p, from.size(), to);
  };
  replace("{{last_user}}", last_user);
  replace("{{last}}", last);
  replace("{{turn}}", std::to_string(turns));
  return text;
}

class ScriptedProvider final : public Provider {
 public:
  explicit ScriptedProvider(Json script) : script_(std::move(script)) {}

  asio::awaitable<Result<ChatResult>> chat(net::HttpClient&, const ChatCall& call, const OnDelta& on_delta) const override {
    auto reply = scripted_reply(script_, call);
    if (!reply) co_return reply.error();
    const int64_t delay = script_.is_object() ? script_.value("token_delay_ms", int64_t{0}) : 0;
    if (on_delta) {
      const auto& text = reply->message.content;
      size_t start = 0;
      while (start < text.size()) {  // word by word, as a model would stream it
        size_t end = text.find(' ', start + 1);
        end = end == std::string::npos ? text.size() : end;
        if (delay > 0) {
          asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(delay));
          auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
          if (ec) co_return Error::cancelled("the model call was cancelled");
        }
        on_delta(std::string_view(text).substr(start, end - start));
        start = end;
      }
    }
    co_return std::move(*reply);
  }

 private:
  Json script_;
};

}  // namespace

std::vector<std::string> check_script(const Json& script) {
  std::vector<std::string> problems;
  const Json* replies = script.is_array() ? &script : (script.is_object() && script.contains("replies") ? &script["replies"] : nullptr);
  if (!replies || !replies->is_array() || replies->empty()) {
    problems.push_back("script must be a non-empty array of replies or {\"replies\": [...]}");
    return problems;
  }
  auto check_reply = [&](const Json& r, const std::string& where) {
    if (r.is_string()) return;
    if (!r.is_object()) {
      problems.push_back(where + ": a reply is a string or {content, tool_calls, usage}");
      return;
    }
    if (r.contains("content") && !r["content"].is_string()) problems.push_back(where + ".content must be a string");
    if (r.contains("tool_calls")) {
      if (!r["tool_calls"].is_array()) problems.push_back(where + ".tool_calls must be an array");
      else
        for (const auto& tc : r["tool_calls"])
          if (!tc.is_object() || !tc.contains("name") || !tc["name"].is_string())
            problems.push_back(where + ".tool_calls[] need a name");
    }
    if (r.contains("usage") && !r["usage"].is_object()) problems.push_back(where + ".usage must be an object");
  };
  for (size_t i = 0; i < replies->size(); ++i) check_reply((*replies)[i], "replies[" + std::to_string(i) + "]");
  if (script.is_object() && script.contains("rules")) {
    if (!script["rules"].is_array()) {
      problems.push_back("rules must be an array");
    } else {
      for (size_t i = 0; i < script["rules"].size(); ++i) {
        const auto& r = script["rules"][i];
        if (!r.is_object() || !r.contains("when_last_contains") || !r["when_last_contains"].is_string() || !r.contains("reply"))
          problems.push_back("rules[" + std::to_string(i) + "] must be {when_last_contains, reply}");
        else
          check_reply(r["reply"], "rules[" + std::to_string(i) + "].reply");
      }
    }
  }
  return problems;
}

Result<ChatResult> scripted_reply(const Json& script, const ChatCall& call) {
  if (auto problems = check_script(script); !problems.empty()) return Error::invalid_argument("scripted model: " + problems.front());
  const Json& replies = script.is_array() ? script : script["replies"];
  // Which reply: the first rule whose text occurs in the last message, else the k-th reply where
  // k counts the assistant messages since the last user message (each user turn starts over).
  std::string last;
  int64_t since_user = 0;
  for (const auto& m : call.messages) {
    if (m.role == "user") since_user = 0;
    if (m.role == "assistant") ++since_user;
    if (m.role != "system") last = m.content;
  }
  const Json* pick = nullptr;
  if (script.is_object() && script.contains("rules"))
    for (const auto& r : script["rules"])
      if (last.find(r["when_last_contains"].get<std::string>()) != std::string::npos) {
        pick = &r["reply"];
        break;
      }
  if (!pick) {
    size_t k = static_cast<size_t>(since_user);
    if (k >= replies.size()) {
      bool cycle = script.is_object() && script.value("after_last", "repeat") == "cycle";
      k = cycle ? k % replies.size() : replies.size() - 1;
    }
    pick = &replies[k];
  }
  ChatResult out;
  out.id = "chatcmpl-scripted-" + std::to_string(call.messages.size());
  out.message.role = "assistant";
  Json reply = pick->is_string() ? Json{{"content", *pick}} : *pick;
  out.message.content = substitute(reply.value("content", ""), call);
  if (reply.contains("tool_calls")) {
    int i = 0;
    for (const auto& tc : reply["tool_calls"]) {
      std::string id = tc.value("id", "call_" + std::to_string(call.messages.size()) + "_" + std::to_string(i));
      Json args = tc.value("args", Json::object());
      for (auto& [k, v] : args.items())  // string arguments take the placeholders too
        if (v.is_string()) v = substitute(v.get<std::string>(), call);
      out.message.tool_calls.push_back({id, tc["name"].get<std::string>(), std::move(args)});
      ++i;
    }
  }
  out.finish_reason = out.message.tool_calls.empty() ? "stop" : "tool_calls";
  if (call.max_tokens && out.message.tool_calls.empty() && estimate_tokens(out.message.content) > *call.max_tokens) {
    out.message.content.resize(static_cast<size_t>(*call.max_tokens) * 4);
    out.finish_reason = "length";
  }
  const Json usage = reply.value("usage", Json::object());
  out.usage.prompt_tokens = usage.value("prompt_tokens", estimate_prompt_tokens(call));
  int64_t completion = estimate_tokens(out.message.content);
  for (const auto& tc : out.message.tool_calls) completion += estimate_tokens(tc.name) + estimate_tokens(tc.args.dump());
  out.usage.completion_tokens = usage.value("completion_tokens", completion);
  out.usage.cached_tokens = usage.value("cached_tokens", int64_t{0});
  out.usage.reasoning_tokens = usage.value("reasoning_tokens", int64_t{0});
  return out;
}

std::string effective_base_url(std::string_view provider, const std::string& base_url) {
  if (!base_url.empty()) return base_url;
  if (provider == "openai") return "https://api.openai.com/v1";
  if (provider == "anthropic") return "https://api.anthropic.com";
  return base_url;
}

Result<std::unique_ptr<Provider>> make_provider(Endpoint e) {
  if (e.provider == "openai") return std::unique_ptr<Provider>(new OpenAiProvider(std::move(e)));
  if (e.provider == "anthropic") return std::unique_ptr<Provider>(new AnthropicProvider(std::move(e)));
  if (e.provider == "scripted") {
    if (auto problems = check_script(e.script); !problems.empty())
      return Error::invalid_argument("scripted model: " + problems.front());
    return std::unique_ptr<Provider>(new ScriptedProvider(std::move(e.script)));
  }
  return Error::invalid_argument("unknown provider '" + e.provider + "' (known: openai, anthropic, scripted)");
}

}  // namespace ap::llm
