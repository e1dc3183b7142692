#include "gateway/handlers/chat_body.h"

#include <gtest/gtest.h>

namespace ap::gateway {
namespace {

TEST(ReadChatRequest, ReadsTheFieldsTheGatewayNeeds) {
  auto r = read_chat_request(R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],)"
                             R"("max_tokens":16,"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->model, "gpt-4o-mini");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->max_tokens, 16);
  EXPECT_EQ(r->text_bytes, std::string(R"([{"role":"user","content":"Say hello"}])").size());
  EXPECT_FALSE(r->repeated_keys);
}

TEST(ReadChatRequest, DefaultsAndTheTokenBound) {
  auto r = read_chat_request(R"({"model":"m","messages":[1],"system":"be brief","tools":[{"name":"t"}]})");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->stream);
  EXPECT_FALSE(r->include_usage);
  EXPECT_FALSE(r->max_tokens);
  EXPECT_EQ(r->text_bytes, std::string("[1]").size() + std::string(R"("be brief")").size() +
                               std::string(R"([{"name":"t"}])").size());
  // max_completion_tokens first; non-integers ignored; at least 1; huge ones capped.
  EXPECT_EQ(read_chat_request(R"({"model":"m","messages":[1],"max_tokens":5,"max_completion_tokens":7})")->max_tokens, 7);
  EXPECT_EQ(read_chat_request(R"({"model":"m","messages":[1],"max_tokens":5,"max_completion_tokens":7.5})")->max_tokens, 5);
  EXPECT_EQ(read_chat_request(R"({"model":"m","messages":[1],"max_tokens":-3})")->max_tokens, 1);
  EXPECT_EQ(read_chat_request(R"({"model":"m","messages":[1],"max_tokens":18446744073709551615})")->max_tokens,
            int64_t{1} << 40);
  EXPECT_FALSE(read_chat_request(R"({"model":"m","messages":[1],"stream_options":{"include_usage":false}})")->include_usage);
  EXPECT_FALSE(read_chat_request(R"({"model":"m","messages":[1],"stream_options":"x"})")->include_usage);
}

TEST(ReadChatRequest, ARepeatedKeyReadsAsItsLastOccurrence) {
  auto r = read_chat_request(R"({"model":"a","messages":[1],"max_tokens":1,"max_tokens":900,"model":"b"})");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->repeated_keys);
  EXPECT_EQ(r->model, "b");
  EXPECT_EQ(r->max_tokens, 900);
  // A key repeated deeper down is not a top-level repetition.
  EXPECT_FALSE(read_chat_request(R"({"model":"a","messages":[{"x":1,"x":2}]})")->repeated_keys);
}

TEST(ReadChatRequest, RefusesWhatIsNotAChatRequest) {
  auto message = [](std::string_view body) {
    auto r = read_chat_request(body);
    EXPECT_FALSE(r) << body;
    return r ? std::string() : r.error().message;
  };
  EXPECT_EQ(message("{\"model\": "), "malformed JSON body");
  EXPECT_EQ(message("{\"model\":\"m\",\"messages\":[1]}}"), "malformed JSON body");
  EXPECT_EQ(message("{\"model\":\"\xff\",\"messages\":[1]}"), "malformed JSON body");  // not UTF-8
  EXPECT_EQ(message(R"({"model":"m","messages":[1e400]})"), "malformed JSON body");  // no double holds it
  EXPECT_EQ(message(std::string(5000, '[') + std::string(5000, ']')), "JSON body nested more than 1024 levels deep");
  EXPECT_EQ(message("[1]"), "request body must be a JSON object");
  EXPECT_EQ(message(R"({"messages":[1]})"), "model is required and must be a string");
  EXPECT_EQ(message(R"({"model":3,"messages":[1]})"), "model is required and must be a string");
  EXPECT_EQ(message(R"({"model":"m"})"), "messages is required and must be a non-empty array");
  EXPECT_EQ(message(R"({"model":"m","messages":[]})"), "messages is required and must be a non-empty array");
  EXPECT_EQ(message(R"({"model":"m","messages":"hi"})"), "messages is required and must be a non-empty array");
  EXPECT_EQ(message(R"({"model":"m","messages":[1],"stream":"yes"})"), "stream must be a boolean");
}

TEST(ReadChatRequest, WhatSimdjsonAloneWouldRefuse) {
  // An integer beyond 64 bits (a tool schema's uint64 bound): read through nlohmann.
  auto r = read_chat_request(R"({"model":"m","messages":[1],"tools":[{"maximum":18446744073709551616}],"max_tokens":9})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->max_tokens, 9);
  EXPECT_FALSE(r->repeated_keys);
  EXPECT_GT(r->text_bytes, 0u);
  // ... and a repeated key is still noticed on that path.
  r = read_chat_request(R"({"model":"a","messages":[18446744073709551616],"model":"b"})");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->repeated_keys);
  EXPECT_EQ(r->model, "b");
  // A leading UTF-8 byte order mark is skipped.
  EXPECT_EQ(read_chat_request("\xEF\xBB\xBF{\"model\":\"m\",\"messages\":[1]}")->model, "m");
  // Over 1 MiB (a parser of its own), then a small body on the same thread.
  const std::string big = R"({"model":"big","messages":[")" + std::string(2 << 20, 'x') + R"("]})";
  EXPECT_EQ(read_chat_request(big)->text_bytes, (2u << 20) + 4);
  EXPECT_EQ(read_chat_request(R"({"model":"small","messages":[1]})")->model, "small");
  // Not quite right types read as absent.
  EXPECT_FALSE(read_chat_request(R"({"model":"m","messages":[1],"stream_options":{"include_usage":"true"}})")->include_usage);
  EXPECT_EQ(read_chat_request(R"({"model":"m","messages":[1],"max_tokens":0})")->max_tokens, 1);
  EXPECT_EQ(read_chat_request(R"({"model":"m","messages":[1],"max_completion_tokens":null,"max_tokens":3})")->max_tokens, 3);
}

TEST(ReplyUsage, OpenAiCompletion) {
  auto u = openai_reply_usage(
      R"({"id":"c","choices":[{"message":{"content":"{\"usage\": 1}"}}],"usage":{"prompt_tokens":12,)"
      R"("completion_tokens":8,"total_tokens":20,"prompt_tokens_details":{"cached_tokens":3},)"
      R"("completion_tokens_details":{"reasoning_tokens":2}}})");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt_tokens, 12);
  EXPECT_EQ(u->completion_tokens, 8);
  EXPECT_EQ(u->cached_tokens, 3);
  EXPECT_EQ(u->reasoning_tokens, 2);
  EXPECT_FALSE(openai_reply_usage(R"({"choices":[{"usage":{"prompt_tokens":1}}]})"));  // not top-level
  EXPECT_EQ(openai_reply_usage(R"({"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}})")->prompt_tokens, 2);
  EXPECT_FALSE(openai_reply_usage(R"({"usage":null})"));
  EXPECT_FALSE(openai_reply_usage("not json"));
}

TEST(ReplyUsage, AnthropicMessageCountsCacheReadsAndWritesAsInput) {
  auto u = anthropic_reply_usage(
      R"({"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":5,)"
      R"("cache_creation_input_tokens":2,"output_tokens":7}})");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt_tokens, 17);
  EXPECT_EQ(u->cached_tokens, 5);
  EXPECT_EQ(u->cache_creation_tokens, 2);
  EXPECT_EQ(u->completion_tokens, 7);
  // A model's tool input may hold any JSON number: the usage is still read.
  u = anthropic_reply_usage(R"({"content":[{"type":"tool_use","input":{"n":100000000000000000000}}],)"
                            R"("usage":{"input_tokens":3,"output_tokens":4}})");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt_tokens, 3);
  EXPECT_EQ(u->completion_tokens, 4);
}

TEST(ChunkUsage, OpenAiUsageOnlyChunk) {
  auto c = openai_chunk_usage(R"({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":6}})");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->usage_only);
  EXPECT_EQ(c->usage.prompt_tokens, 4);
  EXPECT_EQ(c->usage.completion_tokens, 6);
  c = openai_chunk_usage(R"({"choices":[{"delta":{}}],"usage":{"prompt_tokens":4,"completion_tokens":6}})");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->usage_only);
  EXPECT_FALSE(openai_chunk_usage(R"({"choices":[],"usage":null})"));
  // A repeated key reads as its last occurrence here too.
  c = openai_chunk_usage(R"({"choices":[{"delta":{}}],"choices":[],"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}})");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->usage_only);
  EXPECT_EQ(c->usage.prompt_tokens, 2);
}

TEST(ChunkUsage, AnthropicStartThenDelta) {
  llm::Usage u;
  EXPECT_TRUE(merge_anthropic_event_usage(
      R"({"type":"message_start","message":{"usage":{"input_tokens":9,"cache_read_input_tokens":1,"output_tokens":1}}})",
      true, u));
  EXPECT_EQ(u.prompt_tokens, 10);
  EXPECT_EQ(u.completion_tokens, 1);
  // message_delta: output so far; input counts only when it has them.
  EXPECT_TRUE(merge_anthropic_event_usage(R"({"type":"message_delta","usage":{"output_tokens":15}})", false, u));
  EXPECT_EQ(u.prompt_tokens, 10);
  EXPECT_EQ(u.completion_tokens, 15);
  // An input count that is not a number leaves the one from message_start.
  EXPECT_TRUE(merge_anthropic_event_usage(R"({"usage":{"input_tokens":null,"output_tokens":15}})", false, u));
  EXPECT_EQ(u.prompt_tokens, 10);
  EXPECT_TRUE(merge_anthropic_event_usage(R"({"usage":{"input_tokens":12,"output_tokens":16}})", false, u));
  EXPECT_EQ(u.prompt_tokens, 12);
  EXPECT_EQ(u.cached_tokens, 0);
  EXPECT_FALSE(merge_anthropic_event_usage(R"({"type":"message_delta"})", false, u));
}

}  // namespace
}  // namespace ap::gateway
