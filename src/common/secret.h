// SecretString: holds a secret (API key, token, password) and never prints it.
// operator<< and fmt print "[redacted]"; the bytes are wiped on destruction.
// Thread-safe as a value (no shared state).
#pragma once

#include <ostream>
#include <string>
#include <string_view>

namespace ap {

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string value) : value_(std::move(value)) {}
  SecretString(const SecretString&) = default;
  SecretString& operator=(const SecretString&) = default;
  SecretString(SecretString&& o) noexcept : value_(std::move(o.value_)) { o.wipe(); }
  SecretString& operator=(SecretString&& o) noexcept {
    wipe();
    value_ = std::move(o.value_);
    o.wipe();
    return *this;
  }
  ~SecretString() { wipe(); }

  // Secret: the only way to the bytes; call sites are where a secret is used on purpose.
  std::string_view reveal() const { return value_; }
  bool empty() const { return value_.empty(); }

  friend std::ostream& operator<<(std::ostream& os, const SecretString&) {
    return os << "[redacted]";
  }

 private:
  void wipe() noexcept;
  std::string value_;
};

}  // namespace ap
