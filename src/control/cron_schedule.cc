#include "control/cron_schedule.h"

#include <date/tz.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

#include "common/text.h"

namespace ap::control {
namespace {

constexpr std::array<const char*, 12> kMonths = {"jan", "feb", "mar", "apr", "may", "jun",
                                                 "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<const char*, 7> kDays = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct Field {
  const char* name;
  int min, max;
  const char* const* names;  // value `min + i` is names[i]
  size_t name_count;
};

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    auto p = s.find(sep);
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) return out;
    s.remove_prefix(p + 1);
  }
}

std::optional<int> value_of(std::string_view t, const Field& f) {
  if (t.empty()) return std::nullopt;
  if (std::all_of(t.begin(), t.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (t.size() > 4) return std::nullopt;
    return std::stoi(std::string(t));
  }
  const std::string lower = ascii_lower(t);
  for (size_t i = 0; i < f.name_count; ++i)
    if (lower == f.names[i]) return f.min + static_cast<int>(i);
  return std::nullopt;
}

// Sets the bits of one field; `max_value` may exceed f.max (day-of-week 7).
template <size_t N>
Status parse_field(std::string_view text, const Field& f, int max_value, std::bitset<N>& bits, bool& any) {
  auto bad = [&](std::string_view item) {
    return Error::invalid_argument("invalid cron schedule: " + std::string(f.name) + " field '" + std::string(item) +
                                   "' (allowed " + std::to_string(f.min) + "-" + std::to_string(f.max) + ")");
  };
  any = !text.empty() && text[0] == '*';
  for (auto item : split(text, ',')) {
    auto parts = split(item, '/');
    if (parts.size() > 2) return bad(item);
    int step = 1;
    if (parts.size() == 2) {
      auto s = value_of(parts[1], Field{f.name, 1, 1, nullptr, 0});
      if (!s || *s < 1) return bad(item);
      step = *s;
    }
    int lo, hi;
    if (parts[0] == "*") {
      lo = f.min;
      hi = f.max;
    } else {
      auto range = split(parts[0], '-');
      if (range.size() > 2) return bad(item);
      auto a = value_of(range[0], f);
      if (!a) return bad(item);
      lo = *a;
      hi = parts.size() == 2 && range.size() == 1 ? f.max : lo;  // "a/n": from a to the end
      if (range.size() == 2) {
        auto b = value_of(range[1], f);
        if (!b) return bad(item);
        hi = *b;
      }
    }
    if (lo < f.min || hi > max_value || lo > hi) return bad(item);
    for (int v = lo; v <= hi; v += step) bits.set(static_cast<size_t>(v == 7 && N == 7 ? 0 : v));
  }
  return ok_status();
}

std::string_view macro(std::string_view expr) {
  if (expr == "@yearly" || expr == "@annually") return "0 0 1 1 *";
  if (expr == "@monthly") return "0 0 1 * *";
  if (expr == "@weekly") return "0 0 * * 0";
  if (expr == "@daily" || expr == "@midnight") return "0 0 * * *";
  if (expr == "@hourly") return "0 * * * *";
  return expr;
}

}  // namespace

bool CronSchedule::valid_timezone(std::string_view tz) {
  try {
    return date::locate_zone(tz) != nullptr;
  } catch (const std::exception&) {
    return false;
  }
}

Result<CronSchedule> CronSchedule::parse(std::string_view expr, std::string_view timezone) {
  CronSchedule s;
  if (!timezone.empty() && timezone != "UTC") {
    try {
      s.tz_ = date::locate_zone(timezone);
    } catch (const std::exception&) {
      return Error::invalid_argument("Invalid timezone: '" + std::string(timezone) +
                                     "'. Use IANA timezone format (e.g. 'America/New_York').");
    }
  }
  std::vector<std::string_view> fields;
  for (auto f : split(macro(expr), ' '))
    if (!f.empty()) fields.push_back(f);
  if (fields.size() != 5)
    return Error::invalid_argument("invalid cron schedule '" + std::string(expr) +
                                   "': give 5 fields (minute hour day-of-month month day-of-week) or a macro "
                                   "such as @daily");
  bool ignore;
  AP_RETURN_IF_ERROR(parse_field(fields[0], Field{"minute", 0, 59, nullptr, 0}, 59, s.minute_, ignore));
  AP_RETURN_IF_ERROR(parse_field(fields[1], Field{"hour", 0, 23, nullptr, 0}, 23, s.hour_, ignore));
  AP_RETURN_IF_ERROR(parse_field(fields[2], Field{"day-of-month", 1, 31, nullptr, 0}, 31, s.dom_, s.dom_any_));
  AP_RETURN_IF_ERROR(parse_field(fields[3], Field{"month", 1, 12, kMonths.data(), kMonths.size()}, 12, s.month_, ignore));
  AP_RETURN_IF_ERROR(parse_field(fields[4], Field{"day-of-week", 0, 6, kDays.data(), kDays.size()}, 7, s.dow_, s.dow_any_));
  return s;
}

bool CronSchedule::day_matches(int dom, int month, int dow) const {
  if (!month_.test(static_cast<size_t>(month))) return false;
  const bool d = dom_.test(static_cast<size_t>(dom)), w = dow_.test(static_cast<size_t>(dow));
  if (dom_any_ || dow_any_) return d && w;
  return d || w;  // both restricted: either
}

std::optional<CronSchedule::Time> CronSchedule::next(Time after) const {
  using namespace std::chrono;
  using date::local_days;
  auto to_local = [&](Time t) {
    auto s = date::floor<seconds>(t);
    return tz_ ? tz_->to_local(s) : date::local_seconds(s.time_since_epoch());
  };
  const auto start = to_local(after);
  local_days day = date::floor<date::days>(start);
  for (int n = 0; n < 366 * 5 + 2; ++n, day += date::days(1)) {
    const date::year_month_day ymd(day);
    const date::weekday wd(day);
    if (!day_matches(static_cast<int>(static_cast<unsigned>(ymd.day())), static_cast<int>(static_cast<unsigned>(ymd.month())),
                     static_cast<int>(wd.c_encoding())))
      continue;
    for (int h = 0; h < 24; ++h) {
      if (!hour_.test(static_cast<size_t>(h))) continue;
      for (int m = 0; m < 60; ++m) {
        if (!minute_.test(static_cast<size_t>(m))) continue;
        const date::local_seconds lt = day + hours(h) + minutes(m);
        if (lt <= start) continue;
        Time t;
        if (!tz_) {
          t = Time(lt.time_since_epoch());
        } else {
          auto info = tz_->get_info(lt);
          if (info.result == date::local_info::nonexistent) continue;  // skipped by a DST change
          t = Time(tz_->to_sys(lt, date::choose::earliest).time_since_epoch());
        }
        if (t > after) return t;
      }
    }
  }
  return std::nullopt;
}

}  // namespace ap::control
