#include <gtest/gtest.h>

#include "llm/chat.h"
#include "llm/prices.h"
#include "llm/routes.h"
#include "llm/sse.h"

namespace ap::llm {
namespace {

TEST(Sse, ParsesEventsSplitAnywhere) {
  const std::string stream =
      ": comment\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
  for (size_t split = 1; split < stream.size(); ++split) {
    SseParser p;
    std::vector<std::pair<std::string, std::string>> got;
    auto on = [&](std::string_view e, std::string_view d) { got.emplace_back(e, d); };
    p.feed(stream.substr(0, split), on);
    p.feed(stream.substr(split), on);
    ASSERT_EQ(got.size(), 3u) << split;
    EXPECT_EQ(got[0], (std::pair<std::string, std::string>{"message_start", "{\"a\":1}"}));
    EXPECT_EQ(got[1], (std::pair<std::string, std::string>{"message", "line1\nline2"}));
    EXPECT_EQ(got[2].second, "[DONE]");
  }
}

TEST(Prices, CostsInIntegerMicroDollars) {
  auto p = Price::from_json(Json{{"input_cost_per_token", 2.5e-06}, {"output_cost_per_token", 1e-05},
                                 {"cache_read_input_token_cost", 1.25e-06}});
  ASSERT_TRUE(p);
  Usage u;
  u.prompt_tokens = 1000;
  u.cached_tokens = 400;
  u.completion_tokens = 100;
  // 600 * 2.5 + 400 * 1.25 + 100 * 10 micro-USD
  auto c = cost_of(u, *p, "v1");
  EXPECT_EQ(c.micro_usd, 1500 + 500 + 1000);
  EXPECT_FALSE(c.unpriced);
  EXPECT_EQ(c.price_version, "v1");
  // Reasoning tokens at their own price when given, else the output price.
  auto r = Price::from_json(Json{{"input_cost_per_token", 0}, {"output_cost_per_token", 1e-06},
                                 {"output_cost_per_reasoning_token", 3e-06}});
  Usage ru;
  ru.completion_tokens = 10;
  ru.reasoning_tokens = 4;
  EXPECT_EQ(cost_of(ru, *r, "").micro_usd, 6 + 12);
  // Rounding half up of a fraction of a micro-dollar: 3 tokens * 0.15 = 0.45 -> 0; 4 -> 0.6 -> 1.
  auto cheap = Price::from_json(Json{{"input_cost_per_token", 1.5e-07}, {"output_cost_per_token", 0}});
  Usage t3;
  t3.prompt_tokens = 3;
  EXPECT_EQ(cost_of(t3, *cheap, "").micro_usd, 0);
  t3.prompt_tokens = 4;
  EXPECT_EQ(cost_of(t3, *cheap, "").micro_usd, 1);
  EXPECT_TRUE(cost_of(u, std::nullopt, "v").unpriced);
  EXPECT_FALSE(Price::from_json(Json{{"input_cost_per_token", -1}}));
  EXPECT_FALSE(Price::from_json(Json{{"max_tokens", 5}}));
}

TEST(Prices, ShippedTableReadsLiteLlmFormat) {
  const auto& t = PriceTable::shipped();
  EXPECT_GT(t.size(), 5u);
  EXPECT_TRUE(t.version().starts_with("sha256:"));
  ASSERT_TRUE(t.find("openai", "gpt-4o-mini"));
  EXPECT_EQ(t.find("openai", "gpt-4o-mini")->input, 150'000);  // pico-USD per token
  EXPECT_FALSE(t.find("openai", "no-such-model"));
  auto extra = PriceTable::parse(R"({"sample_spec": {"x": 1}, "openai/gpt-4o-mini": {"input_cost_per_token": 1e-06,
    "output_cost_per_token": 2e-06}, "dall-e-3": {"output_cost_per_pixel": 1}})");
  ASSERT_TRUE(extra) << extra.error().message;
  auto merged = t.merged(*extra);
  EXPECT_EQ(merged.find("openai", "gpt-4o-mini")->input, 1'000'000);   // provider-qualified entry wins
  EXPECT_EQ(merged.find("azure", "gpt-4o-mini")->input, 150'000);
  EXPECT_NE(merged.version(), t.version());
  EXPECT_FALSE(PriceTable::parse(R"({"m": {"input_cost_per_token": "free"}})"));
}

TEST(Scripted, RepliesInTurnOrderWithRulesAndTemplates) {
  Json script = Json::parse(R"({"replies": [
      {"tool_calls": [{"name": "search", "args": {"q": "{{last}}"}}]},
      {"content": "Found it: {{last}}", "usage": {"prompt_tokens": 50, "completion_tokens": 7}}],
    "rules": [{"when_last_contains": "hello", "reply": "hi there"}]})");
  ASSERT_TRUE(check_script(script).empty());
  ChatCall call;
  call.messages = {{"user", "weather in Paris", {}, "", ""}};
  auto r1 = scripted_reply(script, call);
  ASSERT_TRUE(r1);
  ASSERT_EQ(r1->message.tool_calls.size(), 1u);
  EXPECT_EQ(r1->message.tool_calls[0].name, "search");
  EXPECT_EQ(r1->finish_reason, "tool_calls");
  EXPECT_FALSE(r1->message.tool_calls[0].id.empty());
  call.messages.push_back(r1->message);
  call.messages.push_back({"tool", "sunny", {}, r1->message.tool_calls[0].id, "search"});
  auto r2 = scripted_reply(script, call);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->message.content, "Found it: sunny");
  EXPECT_EQ(r2->usage.prompt_tokens, 50);
  EXPECT_EQ(r2->usage.completion_tokens, 7);
  // A new user turn starts the replies over; a rule wins over the sequence.
  call.messages.push_back(r2->message);
  call.messages.push_back({"user", "hello again", {}, "", ""});
  EXPECT_EQ(scripted_reply(script, call)->message.content, "hi there");
  EXPECT_FALSE(check_script(Json::parse(R"({"replies": []})")).empty());
  EXPECT_FALSE(check_script(Json::parse(R"([{"tool_calls": [{}]}])")).empty());
}

TEST(Wire, ParsesOpenAiAndAnthropicRequests) {
  auto oa = call_from_openai(Json::parse(R"({"model": "m", "max_completion_tokens": 5, "messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]})"));
  ASSERT_TRUE(oa) << oa.error().message;
  EXPECT_EQ(oa->messages.size(), 4u);
  EXPECT_EQ(oa->messages[0].role, "system");
  EXPECT_EQ(oa->messages[1].content, "ab");
  EXPECT_EQ(oa->messages[2].tool_calls[0].args, Json({{"x", 1}}));
  EXPECT_EQ(oa->messages[3].tool_call_id, "c1");
  EXPECT_EQ(*oa->max_tokens, 5);
  EXPECT_EQ(oa->tools.size(), 1u);
  EXPECT_FALSE(call_from_openai(Json::parse(R"({"model": "m", "messages": []})")));
  EXPECT_FALSE(call_from_openai(Json::parse(R"({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})")));

  auto an = call_from_anthropic(Json::parse(R"({"model": "m", "max_tokens": 10, "system": "sys", "messages": [
      {"role": "user", "content": "hi"},
      {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]})"));
  ASSERT_TRUE(an) << an.error().message;
  ASSERT_EQ(an->messages.size(), 4u);
  EXPECT_EQ(an->messages[0].role, "system");
  EXPECT_EQ(an->messages[2].tool_calls[0].name, "f");
  EXPECT_EQ(an->messages[3].role, "tool");
  EXPECT_EQ(an->messages[3].content, "ok");
  EXPECT_FALSE(call_from_anthropic(Json::parse(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})")));
}

TEST(Wire, UpstreamErrorsNeverEchoTheKeyMessage) {
  auto e = upstream_error(401, R"({"error": {"message": "Incorrect API key provided: sk-abc***xyz"}})", "openai");
  EXPECT_EQ(e.code, Code::kPermissionDenied);
  EXPECT_EQ(e.message.find("sk-"), std::string::npos);
  EXPECT_EQ(upstream_error(429, "{}", "openai").code, Code::kResourceExhausted);
  EXPECT_EQ(upstream_error(400, R"({"type":"error","error":{"type":"invalid_request_error","message":"bad"}})", "anthropic").message,
            "anthropic upstream returned 400: bad");
}

TEST(Routes, ValidatesPutBodies) {
  auto ok = ModelRoute::parse("gpt-4o-mini", Json::parse(R"({"provider": "openai", "upstream_model": "gpt-4o-mini",
      "base_url": "http://127.0.0.1:9/v1", "credential": "openai-key", "prices": {"input_cost_per_token": 1e-6}})"));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_TRUE(ok->price);
  auto bad = [](const char* name, const char* body) { return !ModelRoute::parse(name, Json::parse(body)); };
  EXPECT_TRUE(bad("m", R"({"provider": "cohere", "upstream_model": "x"})"));
  EXPECT_TRUE(bad("m", R"({"provider": "openai"})"));
  EXPECT_TRUE(bad("m", R"({"provider": "openai", "upstream_model": "x", "base_url": "ftp://x"})"));
  EXPECT_TRUE(bad("m", R"({"provider": "openai", "upstream_model": "x", "colour": "red"})"));
  EXPECT_TRUE(bad("m", R"({"provider": "scripted"})"));
  EXPECT_TRUE(bad("m", R"({"provider": "scripted", "script": ["x"], "credential": "k"})"));
  EXPECT_TRUE(bad("bad name", R"({"provider": "scripted", "script": ["x"]})"));
  auto s = ModelRoute::parse("demo", Json::parse(R"({"provider": "scripted", "script": ["hello"]})"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->upstream_model, "demo");
}

}  // namespace
}  // namespace ap::llm
