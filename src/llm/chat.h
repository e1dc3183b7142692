// Chat models behind one interface: a provider-neutral call (messages, tools) and result (the
// assistant's message, token usage), a Provider per route, and the three implementations:
// OpenAI-compatible chat completions, Anthropic Messages, and the scripted model.
// Providers stream: `on_delta` gets each piece of assistant text as it arrives.
// A Provider is immutable once made; `chat` runs on the caller's executor with the caller's
// HttpClient (one per executor), so a Provider may be shared between threads.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/secret.h"

namespace ap::net {
class HttpClient;
}

namespace ap::llm {

using Json = nlohmann::json;

struct ToolCall {
  std::string id;
  std::string name;
  Json args = Json::object();
};

struct Message {
  std::string role;  // system | user | assistant | tool
  std::string content;
  std::vector<ToolCall> tool_calls;  // assistant
  std::string tool_call_id;          // tool
  std::string name;                  // tool: the tool's name
};

struct ToolSpec {
  std::string name;
  std::string description;
  Json parameters = Json::object();  // JSON Schema of the arguments
};

struct ChatCall {
  std::string model;  // the upstream model
  std::vector<Message> messages;
  std::vector<ToolSpec> tools;
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature;
};

struct Usage {
  int64_t prompt_tokens = 0;  // all input tokens, cached ones included
  int64_t cached_tokens = 0;  // input tokens read from the provider's cache
  int64_t cache_creation_tokens = 0;
  int64_t completion_tokens = 0;  // reasoning ones included
  int64_t reasoning_tokens = 0;
  bool estimated = false;  // counted by us (no usage from the provider)
};

struct ChatResult {
  std::string id;
  Message message;  // role assistant
  std::string finish_reason;
  Usage usage;
};

// Tokens of text without a tokenizer: `estimate` is a typical count (bytes / 4, at least 1 for
// non-empty text); `upper_bound` never undercounts byte-level BPE tokenizers (one token per byte).
int64_t estimate_tokens(std::string_view text);
int64_t upper_bound_tokens(std::string_view text);
int64_t estimate_prompt_tokens(const ChatCall& call);
int64_t upper_bound_prompt_tokens(const ChatCall& call);  // for admission: never under

using OnDelta = std::function<void(std::string_view text)>;

// Where a route's calls go. `key` is the provider key from the tenant's vault (empty for local
// servers that need none and for the scripted model).
struct Endpoint {
  std::string provider;  // openai | anthropic | scripted
  std::string base_url;  // openai: ".../v1"; anthropic: the host root; empty: the provider's own
  SecretString key;
  Json script;           // scripted
};

class Provider {
 public:
  virtual ~Provider() = default;
  // InvalidArgument for a bad call, the upstream's error (status and message) as Unavailable /
  // ResourceExhausted / InvalidArgument / PermissionDenied by status.
  virtual boost::asio::awaitable<Result<ChatResult>> chat(net::HttpClient& http, const ChatCall& call,
                                                          const OnDelta& on_delta) const = 0;
};

Result<std::unique_ptr<Provider>> make_provider(Endpoint endpoint);
// The base URL calls of `provider` go to: `base_url`, or the provider's public API when empty.
std::string effective_base_url(std::string_view provider, const std::string& base_url);

// The scripted model's reply to a call (deterministic), also used by the gateway to serve
// scripted routes in OpenAI's and Anthropic's formats.
Result<ChatResult> scripted_reply(const Json& script, const ChatCall& call);
// Checks a script; the problems found (empty: fine).
std::vector<std::string> check_script(const Json& script);

// Error from an upstream's HTTP status and body (provider error formats understood).
Error upstream_error(int status, std::string_view body, std::string_view provider);

// Wire formats (also used by the gateway for scripted routes and by tests).
Json openai_message(const Message& m);
Result<Message> message_from_openai(const Json& m);
Result<ChatCall> call_from_openai(const Json& body);     // an OpenAI chat completions request
Result<ChatCall> call_from_anthropic(const Json& body);  // an Anthropic messages request

}  // namespace ap::llm
