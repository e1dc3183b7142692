#include "graph/channel.h"

#include "common/ids.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

namespace ap::graph {
namespace {

ValuePtr apply(const ChannelSpec& s, const ValuePtr& cur, std::vector<Json> writes) {
  auto r = apply_writes(s, cur, writes);
  EXPECT_TRUE(r) << r.error().message;
  return r ? *r : nullptr;
}

TEST(Channel, LastValueTakesOneWritePerStep) {
  ChannelSpec s{"x", Reducer::kLastValue, {}};
  auto v = apply(s, nullptr, {1});
  EXPECT_EQ(v->value(), 1);
  EXPECT_EQ(apply(s, v, {}), v);  // no write: same value, no new version
  auto two = apply_writes(s, v, std::vector<Json>{2, 3});
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().message.find("INVALID_CONCURRENT_GRAPH_UPDATE"), std::string::npos);
}

TEST(Channel, AppendSharesItsPrefix) {
  ChannelSpec s{"log", Reducer::kAppend, {}};
  auto a = apply(s, nullptr, {Json::array({1, 2})});
  auto b = apply(s, a, {3});
  EXPECT_EQ(a->to_json(), Json::array({1, 2}));
  EXPECT_EQ(b->to_json(), Json::array({1, 2, 3}));
  EXPECT_EQ(b->tail()->prev, a->tail());  // structural sharing
  EXPECT_EQ(*b->at(-1), 3);
  EXPECT_EQ(*b->at(0), 1);
  EXPECT_EQ(b->at(3), nullptr);
}

TEST(Channel, ListTextIsTheJsonTextAndEachItemIsSerialisedOnce) {
  ChannelSpec s{"log", Reducer::kAppend, {}};
  const std::string bad_utf8 = std::string("cut \xE2\x82", 6);
  auto a = apply(s, nullptr, {Json::array({Json{{"content", "a \"quoted\" line\n"}}, Json(bad_utf8)})});
  auto b = apply(s, a, {Json{{"n", 3}}});
  auto expect = [](const ValuePtr& v) { return v->to_json().dump(-1, ' ', false, Json::error_handler_t::replace); };
  // Both versions, in either order, from two threads at once: the shared items' text is made
  // once and reused, and every answer is the whole list's JSON text.
  std::string from_a, from_b;
  std::thread other([&] { a->dump_to(from_a); });
  b->dump_to(from_b);
  other.join();
  EXPECT_EQ(from_a, expect(a));
  EXPECT_EQ(from_b, expect(b));
  EXPECT_EQ(&b->tail()->prev->text(), &a->tail()->text()) << "the shared item's text is one string";
  std::string again;
  b->dump_to(again);
  EXPECT_EQ(again, from_b);
  std::string empty;
  ChannelValue::list(nullptr)->dump_to(empty);
  EXPECT_EQ(empty, "[]");
}

TEST(Channel, AddAndMerge) {
  ChannelSpec add{"n", Reducer::kAdd, {}};
  EXPECT_EQ(apply(add, nullptr, {1, 2, 3})->value(), 6);
  EXPECT_EQ(apply(add, nullptr, {"a", "b"})->value(), "ab");
  EXPECT_DOUBLE_EQ(apply(add, nullptr, {1, 0.5})->value().get<double>(), 1.5);
  EXPECT_FALSE(apply_writes(add, nullptr, std::vector<Json>{1, "x"}));
  ChannelSpec merge{"m", Reducer::kMerge, {}};
  auto m = apply(merge, nullptr, {Json{{"a", 1}}, Json{{"b", 2}}, Json{{"a", 3}}});
  EXPECT_EQ(m->value(), (Json{{"a", 3}, {"b", 2}}));
  EXPECT_FALSE(apply_writes(merge, nullptr, std::vector<Json>{1}));
}

TEST(Channel, AddMessagesAppendsReplacesRemovesAndAssignsIds) {
  ChannelSpec s{"messages", Reducer::kMessages, {}};
  auto v = apply(s, nullptr, {"hi", Json{{"type", "ai"}, {"content", "yo"}, {"id", "m2"}}});
  ASSERT_EQ(v->size(), 2u);
  EXPECT_EQ((*v->at(0))["type"], "human");
  EXPECT_TRUE(Uuid::parse((*v->at(0))["id"].get<std::string>()));
  // Serialised as LangChain's message classes are: the fields they always have.
  EXPECT_EQ((*v->at(0))["additional_kwargs"], Json::object());
  EXPECT_EQ((*v->at(0))["response_metadata"], Json::object());
  EXPECT_FALSE(v->at(0)->contains("tool_calls"));
  EXPECT_EQ((*v->at(1))["tool_calls"], Json::array());
  EXPECT_EQ((*v->at(1))["invalid_tool_calls"], Json::array());
  auto own = apply(s, nullptr, {Json{{"role", "assistant"}, {"content", "x"}, {"response_metadata", {{"model", "m"}}}}});
  EXPECT_EQ((*own->at(0))["type"], "ai");
  EXPECT_EQ((*own->at(0))["response_metadata"]["model"], "m");  // what a message has is kept
  v = apply(s, v, {Json{{"type", "ai"}, {"content", "edited"}, {"id", "m2"}}});
  ASSERT_EQ(v->size(), 2u);
  EXPECT_EQ((*v->at(1))["content"], "edited");
  v = apply(s, v, {Json{{"type", "remove"}, {"id", "m2"}}});
  EXPECT_EQ(v->size(), 1u);
  EXPECT_FALSE(apply_writes(s, v, std::vector<Json>{Json{{"type", "remove"}, {"id", "nope"}}}));
  v = apply(s, v, {Json{{"type", "remove"}, {"id", "__remove_all__"}}, "fresh"});
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ((*v->at(0))["content"], "fresh");
  EXPECT_FALSE(apply_writes(s, v, std::vector<Json>{42}));
}

TEST(Channel, TopicAndEphemeralClearEachStep) {
  ChannelSpec topic{"t", Reducer::kTopic, {}};
  auto v = apply(topic, nullptr, {1, 2});
  EXPECT_EQ(v->to_json(), Json::array({1, 2}));
  EXPECT_EQ(apply(topic, v, {}), nullptr);
  ChannelSpec eph{"e", Reducer::kEphemeral, {}};
  auto e = apply(eph, nullptr, {"x"});
  EXPECT_EQ(e->value(), "x");
  EXPECT_EQ(apply(eph, e, {}), nullptr);
}

TEST(Channel, ReducerNames) {
  EXPECT_EQ(*parse_reducer("messages"), Reducer::kMessages);
  EXPECT_FALSE(parse_reducer("concat"));
  EXPECT_EQ(reducer_name(Reducer::kAppend), "append");
}

}  // namespace
}  // namespace ap::graph
