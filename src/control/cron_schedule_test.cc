#include "control/cron_schedule.h"

#include <date/date.h>
#include <gtest/gtest.h>

namespace ap::control {
namespace {

using namespace date::literals;
using Time = CronSchedule::Time;

Time utc(date::year_month_day d, int h, int m, int s = 0) {
  return date::sys_days(d) + std::chrono::hours(h) + std::chrono::minutes(m) + std::chrono::seconds(s);
}

Time next(std::string_view expr, std::string_view tz, Time after) {
  auto s = CronSchedule::parse(expr, tz);
  EXPECT_TRUE(s) << expr << ": " << s.error().message;
  auto n = s->next(after);
  EXPECT_TRUE(n) << expr;
  return n.value_or(Time{});
}

TEST(CronSchedule, StepsAndRanges) {
  EXPECT_EQ(next("*/15 * * * *", "", utc(2026_y / 12 / 5, 10, 7, 30)), utc(2026_y / 12 / 5, 10, 15));
  EXPECT_EQ(next("*/15 * * * *", "", utc(2026_y / 12 / 5, 10, 15)), utc(2026_y / 12 / 5, 10, 30)) << "strictly after";
  EXPECT_EQ(next("5,10-12 3 * * *", "UTC", utc(2026_y / 12 / 5, 3, 10)), utc(2026_y / 12 / 5, 3, 11));
  EXPECT_EQ(next("10/20 * * * *", "", utc(2026_y / 12 / 5, 3, 31)), utc(2026_y / 12 / 5, 3, 50));
  EXPECT_EQ(next("0 0 1 jan *", "", utc(2026_y / 12 / 5, 0, 0)), utc(2027_y / 1 / 1, 0, 0));
  EXPECT_EQ(next("@hourly", "", utc(2026_y / 12 / 5, 23, 59)), utc(2026_y / 12 / 6, 0, 0));
  EXPECT_EQ(next("@weekly", "", utc(2026_y / 12 / 5, 12, 0)), utc(2026_y / 12 / 6, 0, 0));  // a Sunday
}

TEST(CronSchedule, WeekdaysInATimeZone) {
  // Friday 10:00 in New York (EST, UTC-5): the next weekday 09:00 is Monday.
  EXPECT_EQ(next("0 9 * * mon-fri", "America/New_York", utc(2026_y / 12 / 4, 15, 0)), utc(2026_y / 12 / 7, 14, 0));
  EXPECT_EQ(next("0 9 * * 1-5", "Europe/Paris", utc(2026_y / 12 / 7, 7, 59)), utc(2026_y / 12 / 7, 8, 0));
  // 7 is Sunday too.
  EXPECT_EQ(next("0 0 * * 7", "", utc(2026_y / 12 / 5, 0, 0)), utc(2026_y / 12 / 6, 0, 0));
}

TEST(CronSchedule, EitherDayFieldWhenBothAreRestricted) {
  // The 13th or a Friday: Friday 2026-12-11 comes before Sunday the 13th.
  EXPECT_EQ(next("0 0 13 * fri", "", utc(2026_y / 12 / 5, 0, 0)), utc(2026_y / 12 / 11, 0, 0));
  EXPECT_EQ(next("0 0 13 * *", "", utc(2026_y / 12 / 5, 0, 0)), utc(2026_y / 12 / 13, 0, 0));
}

TEST(CronSchedule, DaylightSavingChanges) {
  // 2026-03-08: New York skips 02:00-03:00; 02:30 does not happen that day.
  EXPECT_EQ(next("30 2 * * *", "America/New_York", utc(2026_y / 3 / 8, 5, 0)), utc(2026_y / 3 / 9, 6, 30));
  // 2026-11-01: 01:30 happens twice (EDT then EST); it fires once, at the first.
  Time first = next("30 1 * * *", "America/New_York", utc(2026_y / 11 / 1, 4, 0));
  EXPECT_EQ(first, utc(2026_y / 11 / 1, 5, 30));
  EXPECT_EQ(next("30 1 * * *", "America/New_York", first), utc(2026_y / 11 / 2, 6, 30));
}

TEST(CronSchedule, NeverFires) {
  auto s = CronSchedule::parse("0 0 30 2 *");
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->next(utc(2026_y / 1 / 1, 0, 0)));
}

TEST(CronSchedule, RejectsBadInput) {
  for (const char* bad : {"* * *", "61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "* * * * mon-",
                          "*/0 * * * *", "5-1 * * * *", "x * * * *", "@sometimes", "", "1,,2 * * * *"}) {
    auto s = CronSchedule::parse(bad);
    EXPECT_FALSE(s) << bad;
    if (!s) EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  }
  auto tz = CronSchedule::parse("* * * * *", "Mars/Olympus_Mons");
  ASSERT_FALSE(tz);
  EXPECT_NE(tz.error().message.find("Invalid timezone"), std::string::npos);
  EXPECT_TRUE(CronSchedule::valid_timezone("Asia/Tokyo"));
  EXPECT_FALSE(CronSchedule::valid_timezone("Nowhere/Land"));
}

}  // namespace
}  // namespace ap::control
