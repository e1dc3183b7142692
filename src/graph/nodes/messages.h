// The state's messages are LangChain's JSON messages ({"type": "human"|"ai"|"tool"|"system",
// "content", "id", "tool_calls": [{"name", "args", "id", "type": "tool_call"}], "tool_call_id",
// ...}); models take llm::Message. These convert between the two, and make the AI message and
// the AIMessageChunks an llm node writes and streams, in the shapes LangGraph's server sends.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "llm/chat.h"

namespace ap::graph::nodes {

using llm::Json;

// InvalidArgument for a message a model cannot take (unknown type, malformed tool calls).
Result<llm::Message> to_chat_message(const Json& m);
// The message's text: a string content, or the text blocks of a list content.
std::string text_of(const Json& content);

// The AI message a model call produced (with usage_metadata and response_metadata).
Json ai_message(const llm::ChatResult& r, const std::string& id, const std::string& model);
// A streamed piece of it: text, or (at the end) the tool calls as tool_call_chunks.
Json ai_chunk(const std::string& id, std::string_view text);
Json ai_tool_call_chunk(const std::string& id, const llm::ChatResult& r);
// A tool's answer to a tool call; status "success" or "error".
Json tool_message(const std::string& tool_call_id, const std::string& name, std::string content,
                  const std::string& status);

}  // namespace ap::graph::nodes
