// Test suites that every Checkpointer must pass: the conformance matrix
// (checkpointer_conformance_test.cc) and the graph semantics that depend on checkpoints
// (graph_saver_test.cc). A test binary instantiates them with its savers:
//   INSTANTIATE_TEST_SUITE_P(Memory, Conformance, ::testing::Values(SaverFactory{...}), saver_name);
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "graph/checkpoint.h"
#include "graph/graph.h"

namespace ap::graph {

struct SaverFactory {
  std::string name;
  std::function<std::unique_ptr<Checkpointer>()> make;  // a new, empty saver per test
};

inline std::string saver_name(const ::testing::TestParamInfo<SaverFactory>& info) {
  return info.param.name;
}

class SaverTest : public ::testing::TestWithParam<SaverFactory> {
 protected:
  void SetUp() override { saver_ = GetParam().make(); }
  std::unique_ptr<Checkpointer> saver_;
};

class Conformance : public SaverTest {};

// Helpers of the graph tests: a node that appends `item` to "log"; compile or fail the test.
inline NodeFn append(std::string item) {
  return [item](NodeContext&) -> Result<NodeOutput> {
    return NodeOutput().write("log", Json::array({item}));
  };
}

inline std::shared_ptr<const CompiledGraph> compile(StateGraph& g) {
  auto c = g.compile();
  EXPECT_TRUE(c) << c.error().message;
  return *c;
}
class GraphOnSaver : public SaverTest {};

}  // namespace ap::graph
