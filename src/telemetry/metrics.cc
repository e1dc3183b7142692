#include "telemetry/metrics.h"

#include <cstdio>

namespace ap::telemetry {
namespace {

const std::vector<double> kDefaultBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                            0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                            5,      10};

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string label_text(const std::vector<std::string>& names, const std::vector<std::string>& vals) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < vals.size(); ++i) {
    if (i) s += ',';
    s += names[i] + "=\"" + escape_label(vals[i]) + "\"";
  }
  return s;
}

std::string fmt_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void render_value(std::string& out, const std::string& name, const std::string& labels,
                  const Counter& c) {
  out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + std::to_string(c.value()) + "\n";
}
void render_value(std::string& out, const std::string& name, const std::string& labels,
                  const Gauge& g) {
  out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + std::to_string(g.value()) + "\n";
}
void render_value(std::string& out, const std::string& name, const std::string& labels,
                  const Histogram& h) {
  h.render(out, name, labels);
}

template <class T> constexpr const char* type_name();
template <> constexpr const char* type_name<Counter>() { return "counter"; }
template <> constexpr const char* type_name<Gauge>() { return "gauge"; }
template <> constexpr const char* type_name<Histogram>() { return "histogram"; }

template <class T>
std::unique_ptr<T> make_series(const std::vector<double>*) {
  return std::make_unique<T>();
}
template <>
std::unique_ptr<Histogram> make_series<Histogram>(const std::vector<double>* b) {
  return std::make_unique<Histogram>(b);
}

}  // namespace

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size()]) {
  for (size_t i = 0; i < bounds_->size(); ++i) buckets_[i] = 0;
}

void Histogram::observe(double v) {
  // Buckets are stored non-cumulative and summed at render time: one increment per observation.
  size_t i = 0;
  while (i < bounds_->size() && v > (*bounds_)[i]) ++i;
  if (i < bounds_->size()) buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(v * 1e9), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::string sep = labels.empty() ? "" : ",";
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_->size(); ++i) {
    cum += buckets_[i].load(std::memory_order_relaxed);
    out += name + "_bucket{" + labels + sep + "le=\"" + fmt_double((*bounds_)[i]) + "\"} " +
           std::to_string(cum) + "\n";
  }
  uint64_t count = count_.load(std::memory_order_relaxed);
  out += name + "_bucket{" + labels + sep + "le=\"+Inf\"} " + std::to_string(count) + "\n";
  std::string l = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + l + " " + fmt_double(sum_nanos_.load() / 1e9) + "\n";
  out += name + "_count" + l + " " + std::to_string(count) + "\n";
}

template <class T>
Family<T>::Family(std::string name, std::string help, std::vector<std::string> labels,
                  std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      labels_(std::move(labels)),
      bounds_(bounds.empty() ? kDefaultBounds : std::move(bounds)) {}

template <class T>
T& Family<T>::with(const std::vector<std::string>& label_values) {
  std::lock_guard lock(mu_);
  auto& slot = series_[label_values];
  if (!slot) slot = make_series<T>(&bounds_);
  return *slot;
}

template <class T>
void Family<T>::render(std::string& out) const {
  std::lock_guard lock(mu_);
  out += "# HELP " + name_ + " " + help_ + "\n# TYPE " + name_ + " " + type_name<T>() + "\n";
  for (const auto& [vals, series] : series_) {
    render_value(out, name_, label_text(labels_, vals), *series);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

namespace {
template <class T>
Family<T>& get_or_make(std::mutex& mu, std::map<std::string, std::unique_ptr<Family<T>>>& m,
                       const std::string& name, const std::string& help,
                       std::vector<std::string> labels, std::vector<double> bounds = {}) {
  std::lock_guard lock(mu);
  auto& slot = m[name];
  if (!slot) slot = std::make_unique<Family<T>>(name, help, std::move(labels), std::move(bounds));
  return *slot;
}
}  // namespace

Family<Counter>& Registry::counter(const std::string& name, const std::string& help,
                                   std::vector<std::string> labels) {
  return get_or_make(mu_, counters_, name, help, std::move(labels));
}
Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help,
                               std::vector<std::string> labels) {
  return get_or_make(mu_, gauges_, name, help, std::move(labels));
}
Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help,
                                       std::vector<std::string> labels,
                                       std::vector<double> bounds) {
  return get_or_make(mu_, histograms_, name, help, std::move(labels), std::move(bounds));
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [_, f] : counters_) f->render(out);
  for (const auto& [_, f] : gauges_) f->render(out);
  for (const auto& [_, f] : histograms_) f->render(out);
  return out;
}

Registry& metrics() {
  static Registry registry;
  return registry;
}

}  // namespace ap::telemetry
