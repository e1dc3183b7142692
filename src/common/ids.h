// Typed identifiers. Ids that mean different things are different types (TenantId, KeyId...),
// all UUIDs underneath. Thread-safe: plain values.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ap {

class Uuid {
 public:
  Uuid() = default;  // the nil UUID
  explicit Uuid(const std::array<uint8_t, 16>& bytes) : bytes_(bytes) {}

  // Parses the canonical 8-4-4-4-12 hex form (either case). nullopt if malformed.
  static std::optional<Uuid> parse(std::string_view text);
  // A random (version 4) UUID.
  static Uuid random_v4();
  // A time-ordered (version 7) UUID: sortable by creation time, friendly to B-tree indexes.
  static Uuid v7(int64_t unix_ms);
  // A name-based (version 5, SHA-1) UUID, as Python's uuid.uuid5(namespace, name).
  static Uuid v5(const Uuid& ns, std::string_view name);

  // Canonical lower-case text form.
  std::string to_string() const;
  bool is_nil() const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }

  auto operator<=>(const Uuid&) const = default;

 private:
  std::array<uint8_t, 16> bytes_{};
};

template <class Tag>
class Id {
 public:
  Id() = default;
  explicit Id(Uuid u) : uuid_(u) {}
  static std::optional<Id> parse(std::string_view text) {
    auto u = Uuid::parse(text);
    if (!u) return std::nullopt;
    return Id(*u);
  }
  std::string to_string() const { return uuid_.to_string(); }
  const Uuid& uuid() const { return uuid_; }
  bool is_nil() const { return uuid_.is_nil(); }
  auto operator<=>(const Id&) const = default;

 private:
  Uuid uuid_;
};

using TenantId = Id<struct TenantTag>;
using KeyId = Id<struct KeyTag>;

struct UuidHash {
  size_t operator()(const Uuid& u) const noexcept;
  template <class Tag>
  size_t operator()(const Id<Tag>& id) const noexcept {
    return (*this)(id.uuid());
  }
};

}  // namespace ap
