#include "common/clock.h"

#include <cstring>
#include <ctime>

namespace ap {

Clock& Clock::system() {
  static SystemClock clock;
  return clock;
}

std::string format_rfc3339(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(us / 1'000'000);
  long frac = static_cast<long>(us % 1'000'000);
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  // The date-time part changes once a second: cache it per thread.
  thread_local time_t cached_secs = -1;
  thread_local char prefix[32];
  thread_local size_t prefix_len = 0;
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    prefix_len = std::strftime(prefix, sizeof prefix, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_secs = secs;
  }
  char buf[48];
  std::memcpy(buf, prefix, prefix_len);
  std::snprintf(buf + prefix_len, sizeof buf - prefix_len, ".%06ldZ", frac);
  return buf;
}

}  // namespace ap
