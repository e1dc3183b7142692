// StateGraph: building and validating a graph (compile). The run loop is in pregel.cc.
#include <algorithm>
#include <set>

#include "graph/graph.h"
#include "graph/internal/impl.h"

namespace ap::graph {
namespace {

bool reserved(const std::string& name) {
  return name == kStart || name == kEnd || name.rfind("__", 0) == 0 ||
         name.find(':') != std::string::npos || name.find('|') != std::string::npos;
}

}  // namespace

NodeOutput NodeOutput::update(const Json& object) {
  NodeOutput out;
  if (object.is_object())
    for (auto it = object.begin(); it != object.end(); ++it) out.writes.emplace_back(it.key(), it.value());
  return out;
}

StateGraph& StateGraph::channel(std::string name, Reducer reducer) {
  channels_.push_back({std::move(name), reducer, {}});
  return *this;
}

StateGraph& StateGraph::node(std::string name, NodeFn fn, RetryPolicy retry,
                             std::shared_ptr<const CompiledGraph> subgraph) {
  nodes_.push_back({std::move(name), std::move(fn), std::move(retry), std::move(subgraph)});
  return *this;
}

StateGraph& StateGraph::edge(std::string from, std::string to) {
  edges_.emplace_back(std::move(from), std::move(to));
  return *this;
}

StateGraph& StateGraph::join(std::vector<std::string> from, std::string to) {
  joins_.emplace_back(std::move(from), std::move(to));
  return *this;
}

StateGraph& StateGraph::branch(std::string from, RouterFn router, std::vector<std::string> targets) {
  branches_.push_back({std::move(from), std::move(router), std::move(targets)});
  return *this;
}

StateGraph& StateGraph::subgraph(std::string name, std::shared_ptr<const CompiledGraph> child) {
  auto fn = [child](NodeContext& ctx) -> Result<NodeOutput> {
    Json in = Json::object();
    for (const auto& c : child->state_channel_names())
      if (const auto& v = ctx.channel(c)) in[c] = v->to_json();
    NodeOutput o;
    AP_ASSIGN_OR_RETURN(Json out, ctx.run_subgraph(*child, std::move(in), &o));
    if (!o.writes.empty() || !o.goto_nodes.empty() || !o.sends.empty()) return o;  // PARENT
    for (auto it = out.begin(); it != out.end(); ++it)
      if (ctx.has_channel(it.key())) o.write(it.key(), it.value());
    return o;
  };
  return node(std::move(name), std::move(fn), {}, child);
}

std::shared_ptr<const CompiledGraph> CompiledGraph::subgraph_of(std::string_view name) const {
  auto n = impl_->node(name);
  return n ? impl_->nodes[*n].subgraph : nullptr;
}

std::vector<std::string> CompiledGraph::state_channel_names() const {
  return std::vector<std::string>(channels_->begin(), channels_->begin() + impl_->user_channels);
}

Result<std::shared_ptr<const CompiledGraph>> StateGraph::compile() const {
  std::vector<std::string> problems;
  auto impl = std::make_shared<CompiledGraph::Impl>();
  // Channels: the user's, then START's input, the branch:to triggers, joins, and Sends.
  for (const auto& c : channels_) {
    if (reserved(c.name)) problems.push_back("channel name '" + c.name + "' is reserved");
    if (impl->channel_index.count(c.name)) problems.push_back("duplicate channel '" + c.name + "'");
    impl->channel_index[c.name] = impl->channels.size();
    impl->channels.push_back(c);
  }
  impl->user_channels = impl->channels.size();
  auto add_internal = [&](std::string name, Reducer r, std::vector<std::string> names = {}) {
    impl->channel_index[name] = impl->channels.size();
    impl->channels.push_back({std::move(name), r, std::move(names)});
    return impl->channels.size() - 1;
  };
  impl->start_channel = add_internal(kStart, Reducer::kEphemeral);

  impl->nodes.push_back({kStart, nullptr, {}, nullptr, {impl->start_channel}, {}, {}, {}});
  impl->node_index[kStart] = 0;
  for (const auto& n : nodes_) {
    if (reserved(n.name)) problems.push_back("node name '" + n.name + "' is reserved");
    if (impl->node_index.count(n.name)) problems.push_back("duplicate node '" + n.name + "'");
    if (impl->channel_index.count(n.name) && impl->channel_index[n.name] < impl->user_channels)
      problems.push_back("node '" + n.name + "' has the name of a channel");
    if (!n.fn) problems.push_back("node '" + n.name + "' has no function");
    impl->node_index[n.name] = impl->nodes.size();
    impl->nodes.push_back({n.name, n.fn, n.retry, n.subgraph, {}, {}, {}, {}});
  }
  impl->branch_channel.assign(impl->nodes.size(), 0);
  for (size_t i = 1; i < impl->nodes.size(); ++i) {
    impl->branch_channel[i] = add_internal("branch:to:" + impl->nodes[i].name, Reducer::kEphemeral);
    impl->nodes[i].triggers.push_back(impl->branch_channel[i]);
  }
  auto known_source = [&](const std::string& n) { return impl->node_index.count(n) > 0; };
  auto known_target = [&](const std::string& n) {
    return n == kEnd || (impl->node_index.count(n) && n != kStart);
  };
  std::set<std::string> reached_by_edges;
  for (const auto& [from, to] : edges_) {
    if (!known_source(from)) problems.push_back("edge from unknown node '" + from + "'");
    if (!known_target(to)) problems.push_back("edge to unknown node '" + to + "'");
    if (!known_source(from) || !known_target(to)) continue;
    reached_by_edges.insert(to);
    if (to != kEnd) impl->nodes[impl->node_index[from]].edge_writes.push_back(impl->branch_channel[impl->node_index[to]]);
  }
  for (const auto& [froms, to] : joins_) {
    bool ok = known_target(to) && to != kEnd && froms.size() >= 2;
    if (froms.size() < 2) problems.push_back("a join into '" + to + "' needs two or more sources");
    if (!known_target(to) || to == kEnd) problems.push_back("join to unknown node '" + to + "'");
    for (const auto& f : froms)
      if (!known_source(f)) {
        problems.push_back("join from unknown node '" + f + "'");
        ok = false;
      }
    if (!ok) continue;
    std::vector<std::string> names = froms;
    std::sort(names.begin(), names.end());
    std::string cname = "join:";
    for (size_t i = 0; i < names.size(); ++i) cname += (i ? "+" : "") + names[i];
    cname += ":" + to;
    size_t c = add_internal(cname, Reducer::kBarrier, names);
    impl->nodes[impl->node_index[to]].triggers.push_back(c);
    for (const auto& f : froms) impl->nodes[impl->node_index[f]].join_writes.push_back(c);
    reached_by_edges.insert(to);
  }
  impl->branch_defs = branches_;
  for (const auto& b : impl->branch_defs) {
    if (!known_source(b.from)) problems.push_back("branch from unknown node '" + b.from + "'");
    if (!b.router) problems.push_back("branch from '" + b.from + "' has no router");
    for (const auto& t : b.targets) {
      if (!known_target(t)) problems.push_back("branch from '" + b.from + "' to unknown node '" + t + "'");
      reached_by_edges.insert(t);
    }
    if (b.targets.empty())  // may go anywhere
      for (size_t i = 1; i < impl->nodes.size(); ++i) reached_by_edges.insert(impl->nodes[i].name);
    if (known_source(b.from)) impl->nodes[impl->node_index[b.from]].branches.push_back(&b);
  }
  impl->tasks_channel = add_internal(kTasksChannel, Reducer::kTopic);
  if (impl->nodes[0].edge_writes.empty() && impl->nodes[0].branches.empty() &&
      std::none_of(joins_.begin(), joins_.end(), [](const auto& j) {
        return std::find(j.first.begin(), j.first.end(), kStart) != j.first.end();
      }))
    problems.push_back("the graph has no entry: add an edge from __start__");
  // Reachability from START through edges, joins and branches (Sends and gotos may reach any
  // node, so a node named only by those counts as reachable when some branch is open-ended).
  std::set<std::string> reachable = {kStart};
  for (bool grew = true; grew;) {
    grew = false;
    auto reach = [&](const std::string& n) { grew |= reachable.insert(n).second; };
    for (const auto& [from, to] : edges_)
      if (reachable.count(from)) reach(to);
    for (const auto& [froms, to] : joins_)
      if (std::all_of(froms.begin(), froms.end(), [&](const auto& f) { return reachable.count(f) > 0; }))
        reach(to);
    for (const auto& b : branches_)
      if (reachable.count(b.from)) {
        for (const auto& t : b.targets) reach(t);
        if (b.targets.empty())
          for (const auto& n : nodes_) reach(n.name);
      }
  }
  for (const auto& n : nodes_)
    if (!reachable.count(n.name))
      problems.push_back("node '" + n.name + "' is unreachable from __start__");
  if (!problems.empty()) {
    std::string msg = "invalid graph: ";
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    return Error::invalid_argument(msg);
  }
  auto names = std::make_shared<std::vector<std::string>>();
  for (const auto& c : impl->channels) names->push_back(c.name);
  auto node_names = std::make_shared<std::vector<std::string>>();
  for (const auto& n : impl->nodes) node_names->push_back(n.name);
  impl->channel_names = names;
  impl->state_names = std::make_shared<const std::vector<std::string>>(
      names->begin(), names->begin() + impl->user_channels);
  impl->node_names = node_names;
  // Branch pointers must point into impl's own copy.
  for (auto& n : impl->nodes) n.branches.clear();
  for (const auto& b : impl->branch_defs) impl->nodes[impl->node_index[b.from]].branches.push_back(&b);
  std::shared_ptr<CompiledGraph> g(new CompiledGraph());
  g->channels_ = names;
  g->nodes_ = node_names;
  g->impl_ = impl;
  return std::shared_ptr<const CompiledGraph>(g);
}

}  // namespace ap::graph
