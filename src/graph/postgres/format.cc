// The checkpoint header format and the small helpers of the PostgreSQL checkpointer.
#include <algorithm>
#include <charconv>

#include "common/crypto.h"
#include "graph/postgres/internal.h"

namespace ap::graph::pg {
namespace {

// Reads {"l": s, "t": s, "v": [n], "s": [n], "i": [n], "c": [0 | 1 | "ref" | {"v": json} |
// {"b": [s]}]} as put() writes it, by hand: a general JSON parser costs ~30k instructions per
// header, and a history reads hundreds. Inline values are parsed once per distinct text.
class HeaderParser {
 public:
  using Inline = InlineValues;
  HeaderParser(std::string_view text, Header& h, Inline& seen_inline) : s_(text), h_(h), inline_(seen_inline) {}

  bool parse() {
    if (!eat('{')) return false;
    if (eat('}')) return false;
    do {
      std::string key;
      if (!string(key) || !eat(':')) return false;
      bool ok = key == "l"   ? string(h_.layout)
                : key == "t" ? string(h_.ts)
                : key == "v" ? numbers(h_.versions)
                : key == "s" ? numbers(h_.seen)
                : key == "i" ? numbers(h_.interrupt_seen)
                : key == "c" ? slots()
                             : skip_value().has_value();
      if (!ok) return false;
    } while (eat(','));
    return eat('}') && !h_.layout.empty() && h_.inline_values.size() == h_.slots.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) return (++i_, true);
    return false;
  }
  bool peek(char c) {
    ws();
    return i_ < s_.size() && s_[i_] == c;
  }
  bool string(std::string& out) {
    auto span = skip_value();
    if (!span || span->empty() || (*span)[0] != '"') return false;
    if (span->find('\\') == std::string_view::npos) {
      out.assign(span->substr(1, span->size() - 2));
      return true;
    }
    Json j = Json::parse(span->begin(), span->end(), nullptr, false);
    if (!j.is_string()) return false;
    out = j.get<std::string>();
    return true;
  }
  bool number(uint64_t& v) {
    ws();
    auto [p, ec] = std::from_chars(s_.data() + i_, s_.data() + s_.size(), v);
    if (ec != std::errc()) return false;
    i_ = static_cast<size_t>(p - s_.data());
    return true;
  }
  bool numbers(std::vector<uint64_t>& out) {
    if (!eat('[')) return false;
    if (eat(']')) return true;
    do {
      uint64_t v;
      if (!number(v)) return false;
      out.push_back(v);
    } while (eat(','));
    return eat(']');
  }
  bool slots() {
    if (!eat('[')) return false;
    if (eat(']')) return true;
    do {
      if (peek('"')) {
        Slot slot{Slot::kRef, {}, 0};
        if (!string(slot.ref)) return false;
        h_.slots.push_back(std::move(slot));
        h_.inline_values.emplace_back();
      } else if (peek('{')) {
        auto whole = skip_value();  // {"v": json} or {"b": [names]}, shared by text
        if (!whole) return false;
        ValuePtr& v = inline_[*whole];
        if (!v) {
          Json j = Json::parse(whole->begin(), whole->end(), nullptr, false);
          if (j.is_object() && j.size() == 1 && j.contains("v")) {
            v = ChannelValue::scalar(std::move(j["v"]));
          } else if (j.is_object() && j.size() == 1 && j.contains("b") && j["b"].is_array()) {
            std::vector<std::string> names;
            for (const auto& n : j["b"])
              if (n.is_string()) names.push_back(n.get<std::string>());
            v = ChannelValue::barrier(std::move(names));
          } else {
            return false;
          }
        }
        h_.slots.push_back({Slot::kInline, {}, 0});
        h_.inline_values.push_back(v);
      } else {
        uint64_t n;
        if (!number(n) || n > 1) return false;
        h_.slots.push_back({n == 1 ? Slot::kRef : Slot::kEmpty, {}, 0});
        h_.inline_values.emplace_back();
      }
    } while (eat(','));
    return eat(']');
  }
  // The text of the JSON value at the cursor (strings, numbers, nested objects and arrays).
  std::optional<std::string_view> skip_value() {
    ws();
    size_t start = i_, depth = 0;
    bool in_string = false;
    for (; i_ < s_.size(); ++i_) {
      char c = s_[i_];
      if (in_string) {
        if (c == '\\') {
          ++i_;
        } else if (c == '"') {
          in_string = false;
          if (depth == 0) return s_.substr(start, ++i_ - start);
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;
        if (--depth == 0) return s_.substr(start, ++i_ - start);
      } else if (depth == 0 && (c == ',' || c == ' ')) {
        break;
      }
    }
    if (depth != 0 || in_string || i_ == start) return std::nullopt;
    return s_.substr(start, i_ - start);  // a number, true, false or null
  }

  std::string_view s_;
  size_t i_ = 0;
  Header& h_;
  Inline& inline_;
};

}  // namespace

bool parse_header(std::string_view text, Header& h, InlineValues& seen_inline) {
  return HeaderParser(text, h, seen_inline).parse();
}

// An element of PostgreSQL's text form of an array, quoted.
std::string layout_id(const std::vector<std::string>& channels, const std::vector<std::string>& nodes) {
  std::string all;
  for (const auto& c : channels) all += c + '\0';
  all += '\1';
  for (const auto& n : nodes) all += n + '\0';
  auto d = sha256(all);
  return hex_encode(d.data(), 8);
}

// The items a list value gained over `parent` (in order), if it extends it by sharing.
std::optional<std::vector<const ListNode*>> appended(const ChannelValue& v, const ChannelValue& parent) {
  if (!v.is_list() || !parent.is_list() || v.size() <= parent.size()) return std::nullopt;
  std::vector<const ListNode*> items;
  const ListNode* n = v.tail().get();
  while (n && n->size > parent.size()) {
    items.push_back(n);
    n = n->prev.get();
  }
  if (n != parent.tail().get()) return std::nullopt;
  std::reverse(items.begin(), items.end());
  return items;
}

ValuePtr list_from(std::shared_ptr<const ListNode> tail, const Json& items) {
  for (const auto& item : items) tail = push(std::move(tail), item);
  return ChannelValue::list(std::move(tail));
}

// JSON text of a value; invalid UTF-8 (say, a model's truncated output) is replaced, not thrown.
std::string to_text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
}

Json parse_json(std::string_view text) { return Json::parse(text.begin(), text.end(), nullptr, false); }

Error corrupt(const std::string& what) { return Error::internal("stored checkpoint is damaged: " + what); }

// Metadata fields other than source and step, as stored in the `metadata` column (or NULL).
Param metadata_column(const CheckpointMetadata& md) {
  Json j = parse_json(md.extra_json);
  if (!j.is_object()) j = Json::object();
  j.erase("source");
  j.erase("step");
  j.erase("parents");
  if (!md.parents.empty()) {
    Json p = Json::object();
    for (const auto& [ns, id] : md.parents) p[ns] = id;
    j["parents"] = std::move(p);
  }
  if (j.empty()) return std::nullopt;
  return to_text(j);
}

CheckpointMetadata metadata_from(std::string_view source, std::string_view step, const Rows& r, int row,
                                 int col) {
  CheckpointMetadata md;
  md.source = std::string(source);
  md.step = std::stoi(std::string(step));
  if (!r.is_null(row, col)) {
    Json j = parse_json(r.get(row, col));
    if (auto p = j.find("parents"); p != j.end() && p->is_object()) {
      for (auto it = p->begin(); it != p->end(); ++it)
        if (it->is_string()) md.parents.emplace_back(it.key(), it->get<std::string>());
      j.erase("parents");
    }
    md.extra_json = j.is_object() ? to_text(j) : "{}";
  }
  return md;
}

// The pending writes of checkpoint row `i` (a JSON array of [task, channel, value, idx, path]).
Status writes_from(const Rows& rows, int i, const std::string& id, std::vector<PendingWrite>& out) {
  if (rows.is_null(i, 8)) return ok_status();
  Json w = parse_json(rows.get(i, 8));
  if (!w.is_array()) return corrupt("checkpoint " + id + " has bad pending writes");
  for (auto& e : w) {
    if (!e.is_array() || e.size() != 5 || !e[0].is_string() || !e[1].is_string() ||
        !e[3].is_number_integer() || !e[4].is_string())
      return corrupt("checkpoint " + id + " has a bad write");
    out.push_back({e[0].get<std::string>(), e[1].get<std::string>(),
                   e[2].is_null() ? nullptr : std::make_shared<const Json>(std::move(e[2])),
                   e[3].get<int>(), e[4].get<std::string>()});
  }
  return ok_status();
}

}  // namespace ap::graph::pg
