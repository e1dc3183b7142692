// Small text helpers.
#pragma once

#include <string>
#include <string_view>

namespace ap {

// ASCII lower case (HTTP header names, host names, cron names): no locale, inlined, other
// bytes (UTF-8 included) unchanged.
constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }
inline void ascii_lower_in_place(std::string& s) {
  for (auto& c : s) c = ascii_lower(c);
}
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  ascii_lower_in_place(out);
  return out;
}

}  // namespace ap
