// The bookkeeping both backends' warm pools share (not thread-safe: their own mutex guards it):
// ready and starting sandboxes by set (tenant|limits), the sets least recently used first, and
// room made within an overall bound by dropping the least recently used sets.
#pragma once

#include <algorithm>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ap::sandbox {

template <class Ready>  // a container of std::unique_ptr<Sandbox> (deque or vector)
struct WarmSets {
  using Item = typename Ready::value_type;
  std::map<std::string, Ready> ready;
  std::map<std::string, int> starting;
  std::list<std::string> order;  // the sets, least recently used first

  // `key` is used now. Sets that hold nothing (no ready or starting sandbox: their starts
  // failed, or they never got room) are forgotten, so the bookkeeping does not grow with every
  // set ever seen.
  void touch(const std::string& key) {
    order.remove(key);
    for (auto it = order.begin(); it != order.end();) {
      if (holds(*it)) {
        ++it;
        continue;
      }
      ready.erase(*it);
      starting.erase(*it);
      it = order.erase(it);
    }
    order.push_back(key);
  }
  // Whether `key`'s set is still kept (a sandbox of one dropped meanwhile is not kept).
  bool kept(const std::string& key) const { return std::find(order.begin(), order.end(), key) != order.end(); }
  int total() const {
    int n = 0;
    for (const auto& [k, q] : ready) n += static_cast<int>(q.size());
    for (const auto& [k, s] : starting) n += s;
    return n;
  }
  // Makes room for up to `more` sandboxes of `key` within `cap` in all: the ready sandboxes of
  // the least recently used other sets go to `dropped` (the caller ends them outside its lock),
  // and a set with none starting is forgotten. Returns how many fit.
  int make_room(const std::string& key, int more, int cap, std::vector<Item>& dropped) {
    for (auto it = order.begin(); more > 0 && total() + more > cap && it != order.end();) {
      if (*it == key) {
        ++it;
        continue;
      }
      if (auto r = ready.find(*it); r != ready.end()) {
        for (auto& s : r->second) dropped.push_back(std::move(s));
        ready.erase(r);
      }
      if (auto s = starting.find(*it); s == starting.end() || s->second == 0) {
        if (s != starting.end()) starting.erase(s);
        it = order.erase(it);
      } else {
        ++it;
      }
    }
    return std::max(0, std::min(more, cap - total()));
  }

 private:
  bool holds(const std::string& key) const {
    auto r = ready.find(key);
    auto s = starting.find(key);
    return (r != ready.end() && !r->second.empty()) || (s != starting.end() && s->second > 0);
  }
};

}  // namespace ap::sandbox
