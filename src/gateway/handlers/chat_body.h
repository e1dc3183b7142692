// The few things the model gateway reads of a chat request and of an upstream's JSON reply,
// read without building a document (simdjson, in the .cc): the gateway forwards the client's own
// bytes and relays the upstream's, so it only needs the model, the stream flags, the token bound
// and, afterwards, the usage.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "llm/chat.h"

namespace ap::gateway {

// A chat request (OpenAI chat completions or Anthropic messages), checked: a JSON object with a
// string `model`, a non-empty array `messages` and, if present, a boolean `stream`. A repeated
// top-level key reads as its last occurrence, as most JSON readers (and the upstreams) do.
struct ChatRequest {
  std::string model;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage is true
  std::optional<int64_t> max_tokens;  // max_completion_tokens, else max_tokens (integers >= 1)
  size_t text_bytes = 0;  // the compact JSON size of messages, system and tools: the prompt's bound
  bool repeated_keys = false;  // a top-level key occurs more than once
};

// Errors: invalid_argument, with the message for the client.
Result<ChatRequest> read_chat_request(std::string_view body);

// The usage of a whole (not streamed) reply: OpenAI's top-level `usage`, or Anthropic's. Nothing
// when the reply has none or is not JSON.
std::optional<llm::Usage> openai_reply_usage(std::string_view reply);
std::optional<llm::Usage> anthropic_reply_usage(std::string_view reply);

// One streamed event's data. OpenAI: a chunk with a `usage` object; `usage_only` when its
// `choices` is an empty array (the chunk stream_options.include_usage adds). Anthropic:
// message_start's `message.usage` (`start`) or message_delta's `usage`, merged into `into`.
struct ChunkUsage {
  llm::Usage usage;
  bool usage_only = false;
};
std::optional<ChunkUsage> openai_chunk_usage(std::string_view data);
bool merge_anthropic_event_usage(std::string_view data, bool start, llm::Usage& into);

}  // namespace ap::gateway
