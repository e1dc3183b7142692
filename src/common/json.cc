#include "common/json.h"

#include <nlohmann/json.hpp>

namespace ap {

Result<Json> parse_json(std::string_view text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::invalid_argument("malformed JSON body");
  return j;
}

namespace {

// SAX events to a DOM for one top-level member only; everything else is lexed and dropped.
class MemberCapture final : public nlohmann::json_sax<Json> {
 public:
  explicit MemberCapture(std::string_view name) : name_(name) {}
  Json take() { return done_ ? std::move(value_) : Json(); }

  bool null() override { return scalar(nullptr); }
  bool boolean(bool v) override { return scalar(v); }
  bool number_integer(number_integer_t v) override { return scalar(v); }
  bool number_unsigned(number_unsigned_t v) override { return scalar(v); }
  bool number_float(number_float_t v, const string_t&) override { return scalar(v); }
  bool string(string_t& v) override { return scalar(std::move(v)); }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return open(Json::object()); }
  bool start_array(std::size_t) override { return open(Json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    if (!stack_.empty()) key_ = std::move(k);
    else if (depth_ == 1) wanted_ = k == name_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const Json::exception&) override { return false; }

 private:
  // Where a value goes: into the capture when inside it, as the capture when it is the member.
  Json* place(Json v) {
    if (!stack_.empty()) {
      Json& parent = *stack_.back();
      if (parent.is_array()) {
        parent.push_back(std::move(v));
        return &parent.back();
      }
      return &(parent[key_] = std::move(v));
    }
    if (depth_ == 1 && wanted_) {
      wanted_ = false;
      value_ = std::move(v);
      return &value_;
    }
    return nullptr;
  }
  bool scalar(Json v) {
    const bool top = stack_.empty() && depth_ == 1 && wanted_;
    place(std::move(v));
    if (top) done_ = true;
    return true;  // read on: a later member of the same name replaces this one
  }
  bool open(Json container) {
    if (depth_ == 0 && !container.is_object()) return false;  // not an object
    const bool top = stack_.empty() && depth_ == 1 && wanted_;
    if (Json* at = place(std::move(container)); at) stack_.push_back(at);
    if (top) done_ = false;  // (a repeat: whole only once it closes)
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    if (!stack_.empty()) {
      stack_.pop_back();
      if (stack_.empty()) done_ = true;
    }
    return true;
  }

  std::string_view name_;
  int depth_ = 0;  // containers open, captured or not
  bool wanted_ = false;
  bool done_ = false;
  std::string key_;
  std::vector<Json*> stack_;
  Json value_;
};

}  // namespace

Json top_level_member(std::string_view text, std::string_view name) {
  MemberCapture capture(name);
  Json::sax_parse(text, &capture, Json::input_format_t::json, /*strict=*/false);
  return capture.take();
}

}  // namespace ap
