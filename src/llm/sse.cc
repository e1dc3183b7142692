#include "llm/sse.h"

namespace ap::llm {

void SseParser::feed(std::string_view bytes, const OnEvent& on_event) {
  for (char c : bytes) {
    if (c == '\n' && last_cr_) {  // the \n of a \r\n
      last_cr_ = false;
      continue;
    }
    last_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      line(on_event);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::line(const OnEvent& on_event) {
  if (line_.empty()) {  // blank line: dispatch
    if (has_data_) on_event(event_.empty() ? std::string_view("message") : std::string_view(event_), data_);
    event_.clear();
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line_.front() == ':') return;
  auto colon = line_.find(':');
  std::string_view field = std::string_view(line_).substr(0, colon);
  std::string_view value = colon == std::string::npos ? std::string_view() : std::string_view(line_).substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  }
}

}  // namespace ap::llm
