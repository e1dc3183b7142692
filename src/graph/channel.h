// Channels: the parts of a graph's state, each with its reducer (LangGraph's channels).
// A channel's value is immutable and shared: a checkpoint holds pointers, never copies, and an
// append-only list shares its prefix with every earlier version, so a long conversation costs
// memory in proportion to what is new. Thread-safe: values are immutable once made.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace ap::graph {

using Json = nlohmann::json;

enum class Reducer {
  kLastValue,  // one write per step; two writes in a step is INVALID_CONCURRENT_GRAPH_UPDATE
  kAnyValue,   // last write of the step wins (internal trigger channels)
  kAppend,     // list: each write appends its items (a list) or one item (anything else)
  kAdd,        // numbers add; strings and lists concatenate
  kMerge,      // objects merge shallowly (later keys win)
  kMessages,   // LangGraph's add_messages: append, replace by id, remove by id, ids assigned
  kTopic,      // list of this step's writes, cleared every step (Send)
  kEphemeral,  // visible for one step, then cleared
  kBarrier,    // internal: available once every named source has written (joins)
};

// "last_value", "append", ... ; InvalidArgument for an unknown name.
Result<Reducer> parse_reducer(std::string_view name);
std::string_view reducer_name(Reducer r);

// A node of a persistent list: the list is its last node; earlier nodes are shared.
struct ListNode {
  ListNode(std::shared_ptr<const ListNode> p, Json i)
      : prev(std::move(p)), item(std::move(i)), size((prev ? prev->size : 0) + 1) {}
  ListNode(const ListNode&) = delete;
  ListNode& operator=(const ListNode&) = delete;
  ~ListNode() { delete text_.load(std::memory_order_relaxed); }

  // The item as JSON text (invalid UTF-8 replaced), made once, the first time it is asked for:
  // a growing conversation is written out whole after every run, and each message is then
  // serialised once in its life instead of every time.
  const std::string& text() const;

  std::shared_ptr<const ListNode> prev;
  Json item;
  uint32_t size = 0;  // items up to and including this one

 private:
  mutable std::atomic<std::string*> text_{nullptr};
};

// `tail` with one more item.
std::shared_ptr<const ListNode> push(std::shared_ptr<const ListNode> tail, Json item);

// The immutable value of one channel at one version.
class ChannelValue {
 public:
  static std::shared_ptr<const ChannelValue> scalar(Json v);
  static std::shared_ptr<const ChannelValue> list(std::shared_ptr<const ListNode> tail);
  static std::shared_ptr<const ChannelValue> barrier(std::vector<std::string> seen);

  bool is_list() const { return kind_ == Kind::kList; }
  bool is_barrier() const { return kind_ == Kind::kBarrier; }
  // The scalar value (null for lists and barriers).
  const Json& value() const;
  // List access without materialising: size, item i (0-based, negative from the end).
  size_t size() const { return tail_ ? tail_->size : 0; }
  const Json* at(int64_t i) const;
  const std::shared_ptr<const ListNode>& tail() const { return tail_; }
  const std::vector<std::string>& seen() const { return seen_; }
  // The whole value as JSON (lists materialised: O(n)).
  Json to_json() const;
  // The same as to_json().dump() (invalid UTF-8 replaced), appended to `out` without building
  // the JSON tree: a list's items are written where they are.
  void dump_to(std::string& out) const;

 private:
  enum class Kind { kScalar, kList, kBarrier };
  Kind kind_ = Kind::kScalar;
  Json scalar_;
  std::shared_ptr<const ListNode> tail_;
  std::vector<std::string> seen_;
};
using ValuePtr = std::shared_ptr<const ChannelValue>;

struct ChannelSpec {
  std::string name;
  Reducer reducer = Reducer::kLastValue;
  std::vector<std::string> barrier_names;  // kBarrier: the sources to wait for
};

// Applies one step's writes (in the engine's deterministic order) to `current` (null: empty).
// Returns the new value (null: empty), or `current` itself when nothing changed.
// InvalidArgument names the channel for a bad write (two writes to a last-value channel, a
// non-number added to a number, ...).
Result<ValuePtr> apply_writes(const ChannelSpec& spec, const ValuePtr& current,
                              std::span<const Json> writes);

// After a node triggered by this channel ran: barriers and ephemeral triggers reset.
ValuePtr consume(const ChannelSpec& spec, const ValuePtr& current);

// A fresh id for a message without one (a random uuid, as LangGraph's add_messages gives).
std::string new_message_id();

}  // namespace ap::graph
