// The test matrix of LangGraph's checkpointer validation suite
// (@langchain/langgraph-checkpoint-validation: put, putWrites, getTuple, list over
// thread x namespace x limit x before x filter, deleteThread, channels carried over from an
// ancestor, only changed channel values stored), data-driven over every Checkpointer we have
// (see checkpointer_suite.h for where each is instantiated).
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "graph/checkpointer_suite.h"

namespace ap::graph {
namespace {

auto kChannels = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"animals", "count"});
auto kNodes = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"__start__", "n"});

Checkpoint make_checkpoint(Json animals, int count) {
  Checkpoint cp;
  cp.id = next_checkpoint_id();
  cp.ts = "2026-01-01T00:00:00.000000Z";
  cp.channels = kChannels;
  cp.nodes = kNodes;
  cp.values = {ChannelValue::scalar(std::move(animals)), ChannelValue::scalar(count)};
  cp.versions = {1, static_cast<uint64_t>(count)};
  cp.seen.assign(kChannels->size() * kNodes->size(), 0);
  return cp;
}

CheckpointMetadata meta(std::string source, int step, std::string extra = "{}") {
  CheckpointMetadata m;
  m.source = std::move(source);
  m.step = step;
  m.extra_json = std::move(extra);
  return m;
}

TEST_P(Conformance, PutThenGetTupleRoundTrips) {
  auto cp = make_checkpoint({"dog"}, 1);
  auto saved = saver_->put({"t", "", ""}, cp, meta("input", -1, R"({"score": 1})"));
  ASSERT_TRUE(saved) << saved.error().message;
  EXPECT_EQ(saved->checkpoint_id, cp.id);
  auto t = saver_->get_tuple({"t", "", cp.id});
  ASSERT_TRUE(t && *t);
  EXPECT_EQ((*t)->checkpoint.to_json(), cp.to_json());
  EXPECT_EQ((*t)->metadata.to_json()["score"], 1);
  EXPECT_EQ((*t)->metadata.to_json()["source"], "input");
  EXPECT_FALSE((*t)->parent);
  // Latest of the thread when no id is given; nothing for unknown ids, threads or namespaces.
  EXPECT_EQ((*saver_->get_tuple({"t", "", ""}))->checkpoint.id, cp.id);
  EXPECT_FALSE(*saver_->get_tuple({"t", "", "00000000-0000-7000-8000-000000000000"}));
  EXPECT_FALSE(*saver_->get_tuple({"other", "", ""}));
  EXPECT_FALSE(*saver_->get_tuple({"t", "ns", ""}));
}

TEST_P(Conformance, ParentLinksAndChannelsCarriedOverFromAnAncestor) {
  auto first = make_checkpoint({"dog"}, 1);
  ASSERT_TRUE(saver_->put({"t", "", ""}, first, meta("input", -1)));
  // The child changes only `count`; `animals` keeps its version and value from the ancestor.
  auto second = first;
  second.id = next_checkpoint_id();
  second.values[1] = ChannelValue::scalar(2);
  second.versions[1] = 2;
  ASSERT_TRUE(saver_->put({"t", "", first.id}, second, meta("loop", 0)));
  auto t = *saver_->get_tuple({"t", "", ""});
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->parent);
  EXPECT_EQ(t->parent->checkpoint_id, first.id);
  EXPECT_EQ(t->checkpoint.to_json()["channel_values"]["animals"], Json::array({"dog"}));
  EXPECT_EQ(t->checkpoint.to_json()["channel_values"]["count"], 2);
  // Storing the unchanged channel again shares it rather than copying it.
  EXPECT_EQ(t->checkpoint.values[0], first.values[0]);
}

TEST_P(Conformance, PutWritesAreIdempotentAndSorted) {
  auto cp = make_checkpoint({"dog"}, 1);
  ASSERT_TRUE(saver_->put({"t", "", ""}, cp, meta("loop", 0)));
  CheckpointConfig c{"t", "", cp.id};
  auto w = [](std::string task, std::string path, std::string ch, Json v, int idx) {
    return PendingWrite{task, ch, std::make_shared<const Json>(std::move(v)), idx, path};
  };
  std::vector<PendingWrite> b = {w("task-b", "~p|b", "animals", "cat", 0), w("task-b", "~p|b", "count", 5, 1)};
  std::vector<PendingWrite> a = {w("task-a", "~p|a", "animals", "fish", 0)};
  ASSERT_TRUE(saver_->put_writes(c, b));
  ASSERT_TRUE(saver_->put_writes(c, a));
  ASSERT_TRUE(saver_->put_writes(c, b));  // a retry never duplicates
  auto t = *saver_->get_tuple(c);
  ASSERT_EQ(t->pending_writes.size(), 3u);
  EXPECT_EQ(t->pending_writes[0].task_id, "task-a");  // by (task_path, task_id, idx)
  EXPECT_EQ(t->pending_writes[1].channel, "animals");
  EXPECT_EQ(*t->pending_writes[2].value, 5);
  EXPECT_FALSE(saver_->put_writes({"t", "", "00000000-0000-7000-8000-000000000000"}, a));
}

TEST_P(Conformance, DeleteThreadRemovesOnlyThatThread) {
  for (const char* t : {"t1", "t2"})
    for (const char* ns : {"", "inner"})
      ASSERT_TRUE(saver_->put({t, ns, ""}, make_checkpoint({"x"}, 1), meta("input", -1)));
  ASSERT_TRUE(saver_->delete_thread("t1"));
  EXPECT_EQ(saver_->list({.thread_id = "t1"})->size(), 0u);
  EXPECT_EQ(saver_->list({.thread_id = "t2"})->size(), 2u);
}

TEST_P(Conformance, DeleteRunRemovesThatRunsCheckpointsOfThatThread) {
  CheckpointConfig at{"t1", "", ""};
  for (int i = 0; i < 2; ++i) at = *saver_->put(at, make_checkpoint({"a"}, i + 1), meta("loop", i, R"({"run_id":"A"})"));
  const std::string last_of_a = at.checkpoint_id;
  for (int i = 0; i < 2; ++i) at = *saver_->put(at, make_checkpoint({"b"}, i + 3), meta("loop", i + 2, R"({"run_id":"B"})"));
  ASSERT_TRUE(saver_->put_writes(at, std::vector<PendingWrite>{{"task", "count", std::make_shared<const Json>(9), 0, ""}}));
  ASSERT_TRUE(saver_->put({"t1", "inner", ""}, make_checkpoint({"b"}, 1), meta("loop", 0, R"({"run_id":"B"})")));
  ASSERT_TRUE(saver_->put({"t2", "", ""}, make_checkpoint({"b"}, 1), meta("loop", 0, R"({"run_id":"B"})")));
  ASSERT_TRUE(saver_->delete_run("t1", "B"));
  auto left = saver_->list({.thread_id = "t1"});
  ASSERT_TRUE(left);
  EXPECT_EQ(left->size(), 2u);
  for (const auto& c : *left) EXPECT_EQ(Json::parse(c.metadata.extra_json)["run_id"], "A");
  auto latest = saver_->get_tuple({"t1", "", ""});
  ASSERT_TRUE(latest && *latest);
  EXPECT_EQ((*latest)->config.checkpoint_id, last_of_a);
  EXPECT_TRUE((*latest)->pending_writes.empty());
  EXPECT_EQ(saver_->list({.thread_id = "t2"})->size(), 1u) << "another thread's checkpoints of that run stay";
  ASSERT_TRUE(saver_->delete_run("nowhere", "B"));
}

TEST_P(Conformance, PatchMetadataMergesIntoTheLatestOrTheNamedCheckpoint) {
  CheckpointConfig first = *saver_->put({"t1", "", ""}, make_checkpoint({"a"}, 1), meta("loop", 0, R"({"run_id":"A"})"));
  CheckpointConfig last = *saver_->put(first, make_checkpoint({"a"}, 2), meta("loop", 1, R"({"run_id":"A"})"));
  ASSERT_TRUE(saver_->patch_metadata({"t1", "", ""}, Json{{"tag", "x"}}));
  ASSERT_TRUE(saver_->patch_metadata(first, Json{{"run_id", "B"}, {"old", true}}));
  auto latest = *saver_->get_tuple({"t1", "", ""});
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->config.checkpoint_id, last.checkpoint_id);
  EXPECT_EQ(Json::parse(latest->metadata.extra_json), (Json{{"run_id", "A"}, {"tag", "x"}}));
  EXPECT_EQ(latest->metadata.source, "loop");
  auto older = *saver_->get_tuple(first);
  ASSERT_TRUE(older);
  EXPECT_EQ(Json::parse(older->metadata.extra_json), (Json{{"run_id", "B"}, {"old", true}}));
  EXPECT_EQ(saver_->patch_metadata({"t9", "", ""}, Json{{"a", 1}}).error().code, Code::kNotFound);
  EXPECT_EQ(saver_->patch_metadata({"t1", "", next_checkpoint_id()}, Json{{"a", 1}}).error().code, Code::kNotFound);
  EXPECT_EQ(saver_->patch_metadata({"t1", "", ""}, Json{{"step", 3}}).error().code, Code::kInvalidArgument);
}

TEST_P(Conformance, CopyThreadFromNowhereChangesNothing) {
  ASSERT_TRUE(saver_->put({"kept", "", ""}, make_checkpoint({"x"}, 1), meta("input", -1)));
  auto r = saver_->copy_thread("missing", "kept");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kNotFound);
  EXPECT_EQ(saver_->list({.thread_id = "kept"})->size(), 1u);
  ASSERT_TRUE(saver_->copy_thread("kept", "copy"));
  EXPECT_EQ(saver_->list({.thread_id = "copy"})->size(), 1u);
}

// list(): the cartesian product of thread x namespace x limit x before x filter, checked
// against a reference computed from what was stored.
TEST_P(Conformance, ListMatrix) {
  struct Stored {
    std::string thread, ns, id;
    CheckpointMetadata md;
  };
  std::vector<Stored> stored;
  int k = 0;
  for (const char* t : {"thread-1", "thread-2"})
    for (const char* ns : {"", "inner"}) {
      std::string parent;
      for (int step = -1; step <= 1; ++step) {
        auto cp = make_checkpoint({"a"}, step + 2);
        auto md = meta(step < 0 ? "input" : "loop", step,
                       "{\"score\": " + std::to_string(k++ % 3) + "}");
        ASSERT_TRUE(saver_->put({t, ns, parent}, cp, md));
        parent = cp.id;
        stored.push_back({t, ns, cp.id, md});
      }
    }
  std::vector<std::optional<std::string>> threads = {std::nullopt, "thread-1", "thread-2", "none"};
  std::vector<std::optional<std::string>> namespaces = {std::nullopt, "", "inner"};
  std::vector<std::optional<size_t>> limits = {std::nullopt, 1, 2, 100};
  std::vector<std::optional<std::string>> befores = {std::nullopt, stored[4].id, stored[9].id};
  std::vector<std::vector<std::pair<std::string, std::string>>> filters = {
      {}, {{"source", "\"input\""}}, {{"step", "1"}}, {{"score", "2"}},
      {{"source", "\"loop\""}, {"score", "0"}}, {{"missing", "1"}}};
  int cases = 0;
  for (const auto& th : threads)
    for (const auto& ns : namespaces)
      for (const auto& lim : limits)
        for (const auto& bef : befores)
          for (const auto& f : filters) {
            ListOptions o{th, ns, bef, lim, f};
            std::vector<std::string> want;
            for (const auto& s : stored) {
              if (th && *th != s.thread) continue;
              if (ns && *ns != s.ns) continue;
              if (bef && s.id >= *bef) continue;
              Json m = s.md.to_json();
              bool ok = true;
              for (const auto& [key, text] : f) ok = ok && m.contains(key) && m[key] == Json::parse(text);
              if (ok) want.push_back(s.id);
            }
            std::sort(want.rbegin(), want.rend());  // newest first
            if (lim && want.size() > *lim) want.resize(*lim);
            auto got = saver_->list(o);
            ASSERT_TRUE(got) << got.error().message;
            std::vector<std::string> ids;
            for (const auto& t : *got) ids.push_back(t.checkpoint.id);
            EXPECT_EQ(ids, want) << "thread=" << th.value_or("*") << " ns=" << ns.value_or("*")
                                 << " limit=" << (lim ? std::to_string(*lim) : "*")
                                 << " before=" << bef.value_or("*") << " filters=" << f.size();
            ++cases;
          }
  EXPECT_EQ(cases, 4 * 3 * 4 * 3 * 6);
}

}  // namespace
}  // namespace ap::graph
