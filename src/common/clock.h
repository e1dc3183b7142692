// Injected time. Production code takes a Clock& instead of calling std::chrono directly, so
// tests can use FakeClock. SystemClock is thread-safe; FakeClock is not meant to be shared.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace ap {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point now() const = 0;
  virtual std::chrono::steady_clock::time_point steady_now() const = 0;
  int64_t unix_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now().time_since_epoch())
        .count();
  }
  static Clock& system();
};

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
  std::chrono::steady_clock::time_point steady_now() const override {
    return std::chrono::steady_clock::now();
  }
};

class FakeClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::time_point(std::chrono::microseconds(us_.load()));
  }
  std::chrono::steady_clock::time_point steady_now() const override {
    return std::chrono::steady_clock::time_point(std::chrono::microseconds(us_.load()));
  }
  void advance(std::chrono::microseconds d) { us_ += d.count(); }
  void set_unix_ms(int64_t ms) { us_ = ms * 1000; }

 private:
  std::atomic<int64_t> us_{1'700'000'000'000'000};
};

// RFC 3339 UTC text with microseconds ("2026-11-25T12:00:00.123456Z").
std::string format_rfc3339(std::chrono::system_clock::time_point t);

}  // namespace ap
