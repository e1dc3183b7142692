// A cron schedule, as crons are written for LangGraph (croniter's syntax): five fields, minute
// hour day-of-month month day-of-week, each `*`, a value, a range `a-b`, a step `*/n` or
// `a-b/n`, or a comma list of those; month and weekday names (jan, mon); day-of-week 0-7 (0 and
// 7 are Sunday); or one of @yearly @annually @monthly @weekly @daily @midnight @hourly. When both
// day fields are restricted, a day matches either (as Vixie cron). Times are wall-clock times in
// an IANA time zone; a time that a DST change skips does not fire, a repeated one fires once.
// Immutable, thread-safe.
#pragma once

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace date {
class time_zone;
}

namespace ap::control {

class CronSchedule {
 public:
  using Time = std::chrono::system_clock::time_point;

  // InvalidArgument naming the field that is wrong, or the unknown time zone. `timezone` empty:
  // UTC.
  static Result<CronSchedule> parse(std::string_view expr, std::string_view timezone = "");
  // True when `tz` names a time zone of the system's database.
  static bool valid_timezone(std::string_view tz);

  // The first firing time strictly after `after`; nullopt when there is none in the next five
  // years (e.g. "0 0 30 2 *").
  std::optional<Time> next(Time after) const;

 private:
  bool day_matches(int dom, int month, int dow) const;
  std::bitset<60> minute_;
  std::bitset<24> hour_;
  std::bitset<32> dom_;
  std::bitset<13> month_;
  std::bitset<7> dow_;
  bool dom_any_ = true, dow_any_ = true;
  const date::time_zone* tz_ = nullptr;  // null: UTC
};

}  // namespace ap::control
