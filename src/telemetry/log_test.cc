#include "telemetry/log.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace ap::telemetry {
namespace {

TEST(Log, JsonStringEscaping) {
  std::string out;
  append_json_string(out, "a\"b\\c\nd\x01\x7f é");
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\u0001\\u007f é\"");
}

TEST(Log, LevelsBelowTheLoggersAreSkipped) {
  EXPECT_FALSE(log_enabled(Level::kInfo)) << "before init: warnings and errors only";
  EXPECT_TRUE(log_enabled(Level::kWarn));
  const std::string file = ::testing::TempDir() + "log_levels_test.log";
  init_logging(LogOptions{Level::kWarn, file, false});
  EXPECT_FALSE(log_enabled(Level::kInfo));
  EXPECT_TRUE(log_enabled(Level::kError));
  log_info("skipped_line");
  log_warn("written_line");
  init_logging(LogOptions{Level::kDebug, file + ".2", false});
  EXPECT_TRUE(log_enabled(Level::kDebug));
  shutdown_logging();
  std::FILE* f = std::fopen(file.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[4096] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string text(buf, n);
  EXPECT_NE(text.find("written_line"), std::string::npos);
  EXPECT_EQ(text.find("skipped_line"), std::string::npos);
  EXPECT_FALSE(log_enabled(Level::kInfo)) << "after shutdown: as before init";
}

}  // namespace
}  // namespace ap::telemetry
