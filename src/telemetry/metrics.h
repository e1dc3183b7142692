// Prometheus metrics: counters, gauges and histograms with labels, rendered in the text
// exposition format. Thread-safe: series values are atomics; creating a series takes a lock, so
// hot paths keep the Series pointer they got once.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ap::telemetry {

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void observe(double v);
  // Renders `name_bucket`, `name_sum`, `name_count` lines with the given label prefix.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_nanos_{0};  // sum of observed seconds, in nanoseconds
};

enum class MetricType { kCounter, kGauge, kHistogram };

// A named metric with label names; `with(values)` returns its series for those label values.
template <class T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labels,
         std::vector<double> bounds = {});
  T& with(const std::vector<std::string>& label_values);
  void render(std::string& out) const;

 private:
  std::string name_, help_;
  std::vector<std::string> labels_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> series_;
};

class Registry {
 public:
  Family<Counter>& counter(const std::string& name, const std::string& help,
                           std::vector<std::string> labels = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help,
                       std::vector<std::string> labels = {});
  // Seconds buckets from 100 µs to 10 s unless given.
  Family<Histogram>& histogram(const std::string& name, const std::string& help,
                               std::vector<std::string> labels = {},
                               std::vector<double> bounds = {});
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family<Counter>>> counters_;
  std::map<std::string, std::unique_ptr<Family<Gauge>>> gauges_;
  std::map<std::string, std::unique_ptr<Family<Histogram>>> histograms_;
};

// The process-wide registry that /metrics renders.
Registry& metrics();

}  // namespace ap::telemetry
