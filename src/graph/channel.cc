#include "graph/channel.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "common/ids.h"

namespace ap::graph {
namespace {

const Json kNull;

std::vector<const Json*> items_of(const ListNode* tail) {
  std::vector<const Json*> out(tail ? tail->size : 0);
  size_t i = out.size();
  for (auto n = tail; n; n = n->prev.get()) out[--i] = &n->item;
  return out;
}

std::shared_ptr<const ListNode> build(std::vector<Json> items) {
  std::shared_ptr<const ListNode> tail;
  for (auto& it : items) tail = push(std::move(tail), std::move(it));
  return tail;
}

Error bad_write(const ChannelSpec& spec, const std::string& what) {
  return Error::invalid_argument("channel '" + spec.name + "': " + what);
}

struct Incoming {
  Json message;
  bool fresh_id = false;  // assigned here: cannot collide with anything stored
};

// add_messages' coercion: a string is a human message; every message gets an id.
Result<Incoming> as_message(const ChannelSpec& spec, Json m) {
  if (m.is_string()) m = Json{{"type", "human"}, {"content", m.get<std::string>()}};
  if (!m.is_object()) return bad_write(spec, "a message must be an object or a string");
  // OpenAI-style {"role": ...} becomes LangChain's {"type": ...}, as convert_to_messages does.
  if (auto role = m.find("role"); role != m.end() && !m.contains("type")) {
    static const std::map<std::string, std::string> kTypes = {
        {"user", "human"}, {"human", "human"}, {"assistant", "ai"}, {"ai", "ai"},
        {"system", "system"}, {"developer", "system"}, {"tool", "tool"}, {"function", "function"}};
    auto t = role->is_string() ? kTypes.find(role->get<std::string>()) : kTypes.end();
    if (t == kTypes.end()) return bad_write(spec, "unknown message role " + role->dump());
    m["type"] = t->second;
    m.erase("role");
  }
  // The fields LangChain's message classes always serialise (as LangGraph's server writes them).
  if (auto type = m.find("type"); type != m.end() && type->is_string() && *type != "remove") {
    const bool ai = *type == "ai";
    if (!m.contains("additional_kwargs")) m["additional_kwargs"] = Json::object();
    if (!m.contains("response_metadata")) m["response_metadata"] = Json::object();
    if (ai && !m.contains("tool_calls")) m["tool_calls"] = Json::array();
    if (ai && !m.contains("invalid_tool_calls")) m["invalid_tool_calls"] = Json::array();
  }
  auto id = m.find("id");
  if (id == m.end() || id->is_null() || (id->is_string() && id->get<std::string>().empty())) {
    m["id"] = new_message_id();
    return Incoming{std::move(m), true};
  }
  if (!id->is_string()) return bad_write(spec, "a message id must be a string");
  return Incoming{std::move(m), false};
}

Result<ValuePtr> add_messages(const ChannelSpec& spec, const ValuePtr& current,
                              std::span<const Json> writes) {
  std::vector<Incoming> incoming;
  for (const auto& w : writes) {
    if (w.is_array()) {
      for (const auto& m : w) {
        AP_ASSIGN_OR_RETURN(auto msg, as_message(spec, m));
        incoming.push_back(std::move(msg));
      }
    } else {
      AP_ASSIGN_OR_RETURN(auto msg, as_message(spec, w));
      incoming.push_back(std::move(msg));
    }
  }
  if (incoming.empty()) return current;
  // Fast path: plain appends of messages whose ids are new (fresh ids always are) keep sharing
  // the existing list. Only explicit ids are looked up.
  bool needs_rebuild = false;
  std::unordered_map<std::string, size_t> existing;
  bool indexed = false;
  auto index = [&] {
    if (indexed) return;
    indexed = true;
    size_t i = current ? current->size() : 0;
    for (auto n = current ? current->tail().get() : nullptr; n; n = n->prev.get()) {
      --i;
      auto it = n->item.find("id");
      if (it != n->item.end() && it->is_string()) existing.emplace(it->get<std::string>(), i);
    }
  };
  for (const auto& in : incoming) {
    const Json& m = in.message;
    if (m.value("type", "") == "remove") {
      needs_rebuild = true;
      break;
    }
    if (in.fresh_id) continue;
    const std::string& id = m["id"].get_ref<const std::string&>();
    index();
    if (existing.count(id)) {
      needs_rebuild = true;
      break;
    }
  }
  if (!needs_rebuild) {
    // Ids repeated inside this batch are merged too (the later one replaces the earlier).
    std::unordered_map<std::string, size_t> batch;
    for (size_t i = 0; i < incoming.size(); ++i) batch[incoming[i].message["id"]] = i;
    if (batch.size() == incoming.size()) {
      auto tail = current ? current->tail() : nullptr;
      for (auto& in : incoming) tail = push(std::move(tail), std::move(in.message));
      return ChannelValue::list(std::move(tail));
    }
  }
  // General path: rebuild with replace and remove by id (O(n), rare).
  std::vector<Json> items;
  for (const Json* j : items_of(current ? current->tail().get() : nullptr)) items.push_back(*j);
  std::unordered_map<std::string, size_t> pos;
  for (size_t i = 0; i < items.size(); ++i) {
    auto it = items[i].find("id");
    if (it != items[i].end() && it->is_string()) pos[it->get<std::string>()] = i;
  }
  std::vector<bool> removed(items.size(), false);
  for (auto& in : incoming) {
    Json& m = in.message;
    std::string id = m["id"];
    if (m.value("type", "") == "remove") {
      if (id == "__remove_all__") {
        std::fill(removed.begin(), removed.end(), true);
        continue;
      }
      auto p = pos.find(id);
      if (p == pos.end() || removed[p->second])
        return bad_write(spec, "cannot remove message '" + id + "': no such id");
      removed[p->second] = true;
      continue;
    }
    if (auto p = pos.find(id); p != pos.end() && !removed[p->second]) {
      items[p->second] = std::move(m);
    } else {
      pos[id] = items.size();
      items.push_back(std::move(m));
      removed.push_back(false);
    }
  }
  std::vector<Json> kept;
  for (size_t i = 0; i < items.size(); ++i)
    if (!removed[i]) kept.push_back(std::move(items[i]));
  return ChannelValue::list(build(std::move(kept)));
}

Result<Json> add_values(const ChannelSpec& spec, Json acc, const Json& w) {
  if (acc.is_null()) return w;
  if (acc.is_number_integer() && w.is_number_integer())
    return Json(acc.get<int64_t>() + w.get<int64_t>());
  if (acc.is_number() && w.is_number()) return Json(acc.get<double>() + w.get<double>());
  if (acc.is_string() && w.is_string()) return Json(acc.get<std::string>() + w.get<std::string>());
  if (acc.is_array() && w.is_array()) {
    for (const auto& x : w) acc.push_back(x);
    return acc;
  }
  return bad_write(spec, "cannot add a " + std::string(w.type_name()) + " to a " +
                             std::string(acc.type_name()));
}

}  // namespace

std::shared_ptr<const ListNode> push(std::shared_ptr<const ListNode> tail, Json item) {
  return std::make_shared<const ListNode>(std::move(tail), std::move(item));  // one allocation
}

const std::string& ListNode::text() const {
  if (const std::string* t = text_.load(std::memory_order_acquire)) return *t;
  auto* mine = new std::string(item.dump(-1, ' ', false, Json::error_handler_t::replace));
  std::string* expected = nullptr;
  if (text_.compare_exchange_strong(expected, mine, std::memory_order_acq_rel)) return *mine;
  delete mine;  // another thread made it first
  return *expected;
}

ValuePtr ChannelValue::scalar(Json v) {
  auto c = std::make_shared<ChannelValue>();
  c->kind_ = Kind::kScalar;
  c->scalar_ = std::move(v);
  return c;
}

ValuePtr ChannelValue::list(std::shared_ptr<const ListNode> tail) {
  auto c = std::make_shared<ChannelValue>();
  c->kind_ = Kind::kList;
  c->tail_ = std::move(tail);
  return c;
}

ValuePtr ChannelValue::barrier(std::vector<std::string> seen) {
  auto c = std::make_shared<ChannelValue>();
  c->kind_ = Kind::kBarrier;
  c->seen_ = std::move(seen);
  return c;
}

const Json& ChannelValue::value() const { return scalar_; }

const Json* ChannelValue::at(int64_t i) const {
  int64_t n = static_cast<int64_t>(size());
  if (i < 0) i += n;
  if (i < 0 || i >= n) return nullptr;
  // Walk back from the end: the recent items (what routers look at) are the cheap ones.
  int64_t steps = n - 1 - i;
  auto node = tail_.get();
  while (steps-- > 0) node = node->prev.get();
  return &node->item;
}

Json ChannelValue::to_json() const {
  switch (kind_) {
    case Kind::kScalar: return value();
    case Kind::kBarrier: return Json(seen_);
    case Kind::kList: {
      Json arr = Json::array();
      for (const Json* i : items_of(tail_.get())) arr.push_back(*i);
      return arr;
    }
  }
  return kNull;
}

void ChannelValue::dump_to(std::string& out) const {
  auto dump = [&out](const Json& j) { out += j.dump(-1, ' ', false, Json::error_handler_t::replace); };
  switch (kind_) {
    case Kind::kScalar: dump(value()); return;
    case Kind::kBarrier: dump(Json(seen_)); return;
    case Kind::kList: {
      std::vector<const ListNode*> nodes(size());
      size_t i = nodes.size(), bytes = 2;
      for (auto n = tail_.get(); n; n = n->prev.get()) {
        nodes[--i] = n;
        bytes += n->text().size() + 1;
      }
      out.reserve(out.size() + bytes);
      out += '[';
      for (size_t k = 0; k < nodes.size(); ++k) {
        if (k) out += ',';
        out += nodes[k]->text();
      }
      out += ']';
      return;
    }
  }
  out += "null";
}

Result<Reducer> parse_reducer(std::string_view n) {
  static const std::pair<std::string_view, Reducer> kNames[] = {
      {"last_value", Reducer::kLastValue}, {"append", Reducer::kAppend},
      {"add", Reducer::kAdd},              {"merge", Reducer::kMerge},
      {"messages", Reducer::kMessages},    {"topic", Reducer::kTopic},
      {"ephemeral", Reducer::kEphemeral}, {"any_value", Reducer::kAnyValue}};
  for (const auto& [name, r] : kNames)
    if (name == n) return r;
  return Error::invalid_argument("unknown reducer '" + std::string(n) +
                                 "' (known: last_value, append, add, merge, messages, topic, "
                                 "ephemeral, any_value)");
}

std::string_view reducer_name(Reducer r) {
  switch (r) {
    case Reducer::kLastValue: return "last_value";
    case Reducer::kAnyValue: return "any_value";
    case Reducer::kAppend: return "append";
    case Reducer::kAdd: return "add";
    case Reducer::kMerge: return "merge";
    case Reducer::kMessages: return "messages";
    case Reducer::kTopic: return "topic";
    case Reducer::kEphemeral: return "ephemeral";
    case Reducer::kBarrier: return "barrier";
  }
  return "";
}

Result<ValuePtr> apply_writes(const ChannelSpec& spec, const ValuePtr& current,
                              std::span<const Json> writes) {
  switch (spec.reducer) {
    case Reducer::kLastValue:
      if (writes.empty()) return current;
      if (writes.size() > 1)
        return bad_write(spec, "INVALID_CONCURRENT_GRAPH_UPDATE: it can receive only one value "
                               "per step; give it a reducer to accept several");
      return ChannelValue::scalar(writes[0]);
    case Reducer::kAnyValue:
      if (writes.empty()) return current;
      return ChannelValue::scalar(writes.back());
    case Reducer::kEphemeral:
      if (writes.empty()) return current ? ValuePtr() : current;
      return ChannelValue::scalar(writes.back());
    case Reducer::kAppend: {
      if (writes.empty()) return current;
      auto tail = current ? current->tail() : nullptr;
      for (const auto& w : writes) {
        if (w.is_array()) {
          for (const auto& x : w) tail = push(std::move(tail), x);
        } else {
          tail = push(std::move(tail), w);
        }
      }
      return ChannelValue::list(std::move(tail));
    }
    case Reducer::kTopic: {
      if (writes.empty()) return current ? ValuePtr() : current;
      std::shared_ptr<const ListNode> tail;
      for (const auto& w : writes) tail = push(std::move(tail), w);
      return ChannelValue::list(std::move(tail));
    }
    case Reducer::kAdd: {
      if (writes.empty()) return current;
      Json acc = current ? current->value() : Json();
      for (const auto& w : writes) {
        AP_ASSIGN_OR_RETURN(acc, add_values(spec, std::move(acc), w));
      }
      return ChannelValue::scalar(std::move(acc));
    }
    case Reducer::kMerge: {
      if (writes.empty()) return current;
      Json acc = current ? current->value() : Json::object();
      for (const auto& w : writes) {
        if (!w.is_object()) return bad_write(spec, "merge takes objects");
        for (auto it = w.begin(); it != w.end(); ++it) acc[it.key()] = it.value();
      }
      return ChannelValue::scalar(std::move(acc));
    }
    case Reducer::kMessages:
      return add_messages(spec, current, writes);
    case Reducer::kBarrier: {
      if (writes.empty()) return current;
      std::vector<std::string> seen = current ? current->seen() : std::vector<std::string>{};
      for (const auto& w : writes) {
        if (!w.is_string()) return bad_write(spec, "barrier writes are source names");
        std::string s = w.get<std::string>();
        if (std::find(spec.barrier_names.begin(), spec.barrier_names.end(), s) ==
            spec.barrier_names.end())
          return bad_write(spec, "'" + s + "' is not a source of this join");
        if (std::find(seen.begin(), seen.end(), s) == seen.end()) seen.push_back(s);
      }
      std::sort(seen.begin(), seen.end());
      return ChannelValue::barrier(std::move(seen));
    }
  }
  return current;
}

ValuePtr consume(const ChannelSpec& spec, const ValuePtr& current) {
  if (spec.reducer == Reducer::kBarrier && current &&
      current->seen().size() == spec.barrier_names.size())
    return nullptr;
  return current;
}

std::string new_message_id() { return Uuid::random_v4().to_string(); }

}  // namespace ap::graph
