#include "common/json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace ap {
namespace {

TEST(TopLevelMember, TakesTheMemberWholeAndOnlyAtTheTopLevel) {
  const std::string completion = R"({"id":"c1","choices":[{"index":0,"message":{"role":"assistant",
    "content":"a \"usage\": {\"prompt_tokens\": 99}","usage":{"prompt_tokens":98}}}],
    "usage":{"prompt_tokens":12,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":3},
             "list":[1,[2,{"x":null}],true,1.5,"s"]}})";
  Json u = top_level_member(completion, "usage");
  EXPECT_EQ(u, Json::parse(R"({"prompt_tokens":12,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":3},
                               "list":[1,[2,{"x":null}],true,1.5,"s"]})"));
  EXPECT_EQ(top_level_member(completion, "id"), "c1");
  EXPECT_EQ(top_level_member(completion, "choices")[0]["message"]["usage"]["prompt_tokens"], 98);
}

TEST(TopLevelMember, TheLastOfARepeatedMemberWinsAsInAFullParse) {
  EXPECT_EQ(top_level_member(R"({"usage":{"prompt_tokens":1},"x":[{"usage":2}],"usage":{"prompt_tokens":12}})", "usage"),
            Json::parse(R"({"prompt_tokens":12})"));
  EXPECT_EQ(top_level_member(R"({"usage":{"a":1},"usage":7})", "usage"), 7);
  EXPECT_EQ(top_level_member(R"({"usage":7,"usage":{"a":[1,{"b":2}]}})", "usage"), Json::parse(R"({"a":[1,{"b":2}]})"));
}

TEST(TopLevelMember, ABreakAfterTheMemberKeepsIt) {
  EXPECT_EQ(top_level_member(R"({"usage":{"a":1}, this is not JSON)", "usage"), Json::parse(R"({"a":1})"));
  EXPECT_EQ(top_level_member(R"({"n":5,)", "n"), 5);
  EXPECT_TRUE(top_level_member(R"({"n":5,"n":{"a":)", "n").is_null());  // broken inside the last one
}

TEST(TopLevelMember, NullWhenAbsentNotAnObjectOrBrokenBeforeTheEnd) {
  EXPECT_TRUE(top_level_member(R"({"other":{"usage":1}})", "usage").is_null());
  EXPECT_TRUE(top_level_member(R"([{"usage":1}])", "usage").is_null());
  EXPECT_TRUE(top_level_member(R"({"usage":{"a":1)", "usage").is_null());
  EXPECT_TRUE(top_level_member("", "usage").is_null());
  EXPECT_TRUE(top_level_member("not json", "usage").is_null());
  EXPECT_TRUE(top_level_member(R"({"usage":null})", "usage").is_null());
}

}  // namespace
}  // namespace ap
