#include "telemetry/log.h"

#include <gtest/gtest.h>

namespace ap::telemetry {
namespace {

TEST(Log, JsonStringEscaping) {
  std::string out;
  append_json_string(out, "a\"b\\c\nd\x01\x7f é");
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\u0001\\u007f é\"");
}

}  // namespace
}  // namespace ap::telemetry
