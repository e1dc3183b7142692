// An incremental Server-Sent Events parser: feed it bytes as they arrive (split anywhere), get
// each complete event (name and data, multi-line data joined with '\n'). Not thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace ap::llm {

class SseParser {
 public:
  using OnEvent = std::function<void(std::string_view event, std::string_view data)>;
  // Events without an `event:` line have event "message". Comments are skipped.
  void feed(std::string_view bytes, const OnEvent& on_event);

 private:
  std::string line_;
  std::string event_;
  std::string data_;
  bool has_data_ = false;
  bool last_cr_ = false;
  void line(const OnEvent& on_event);
};

}  // namespace ap::llm
