#include "telemetry/metrics.h"

#include <gtest/gtest.h>

namespace ap::telemetry {
namespace {

TEST(Metrics, RendersPrometheusText) {
  Registry r;
  r.counter("ap_test_total", "Test counter.", {"route"}).with({"/a\"b"}).inc(3);
  auto& h = r.histogram("ap_test_seconds", "Test histogram.", {"route"}, {0.1, 1});
  h.with({"/x"}).observe(0.05);
  h.with({"/x"}).observe(0.5);
  h.with({"/x"}).observe(5);
  std::string text = r.render();
  EXPECT_NE(text.find("# TYPE ap_test_total counter"), std::string::npos);
  EXPECT_NE(text.find("ap_test_total{route=\"/a\\\"b\"} 3"), std::string::npos);
  EXPECT_NE(text.find("ap_test_seconds_bucket{route=\"/x\",le=\"0.1\"} 1"), std::string::npos);
  EXPECT_NE(text.find("ap_test_seconds_bucket{route=\"/x\",le=\"1\"} 2"), std::string::npos);
  EXPECT_NE(text.find("ap_test_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3"), std::string::npos);
  EXPECT_NE(text.find("ap_test_seconds_count{route=\"/x\"} 3"), std::string::npos);
}

}  // namespace
}  // namespace ap::telemetry
