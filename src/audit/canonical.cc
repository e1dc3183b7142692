#include "audit/canonical.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace ap::audit {
namespace {

// UTF-8 -> UTF-16 code units, for RFC 8785's member order.
std::u16string utf16(const std::string& s) {
  std::u16string out;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) { cp = c; n = 1; }
    else if (c >> 5 == 6) { cp = c & 0x1f; n = 2; }
    else if (c >> 4 == 14) { cp = c & 0x0f; n = 3; }
    else { cp = c & 0x07; n = 4; }
    for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = cp << 6 | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += static_cast<char16_t>(0xd800 + (cp >> 10));
      out += static_cast<char16_t>(0xdc00 + (cp & 0x3ff));
    } else {
      out += static_cast<char16_t>(cp);
    }
  }
  return out;
}

void string(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void write(std::string& out, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::object: {
      std::vector<std::pair<std::u16string, nlohmann::json::const_iterator>> members;
      for (auto it = v.begin(); it != v.end(); ++it) members.emplace_back(utf16(it.key()), it);
      std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (size_t i = 0; i < members.size(); ++i) {
        if (i) out += ',';
        string(out, members[i].second.key());
        out += ':';
        write(out, members[i].second.value());
      }
      out += '}';
      break;
    }
    case nlohmann::json::value_t::array:
      out += '[';
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ',';
        write(out, v[i]);
      }
      out += ']';
      break;
    case nlohmann::json::value_t::string: string(out, v.get_ref<const std::string&>()); break;
    case nlohmann::json::value_t::number_float: {
      double d = v.get<double>();
      if (d == static_cast<double>(static_cast<int64_t>(d)) && d > -9.007199254740992e15 && d < 9.007199254740992e15) {
        out += std::to_string(static_cast<int64_t>(d));
      } else {
        out += v.dump();
      }
      break;
    }
    default: out += v.dump(); break;  // null, booleans, integers
  }
}

}  // namespace

std::string canonical_json(const nlohmann::json& value) {
  std::string out;
  write(out, value);
  return out;
}

}  // namespace ap::audit
