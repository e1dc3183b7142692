// `agentplane run`: one agent run from the terminal, through the LangGraph API like any client:
// a thread (new, or --thread), the message as a human message, and either the streamed events
// (--stream: each step and message as it happens) or the final state.
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/cli/client.h"
#include "net/blocking_client.h"

namespace ap::app::cli {
namespace {

using nlohmann::json;

void print_message(const json& m) {
  if (!m.is_object()) return;
  std::string who = m.value("type", m.value("role", "message"));
  if (who == "tool") who = "tool " + m.value("name", "");
  const json& content = m.contains("content") ? m["content"] : json();
  std::string text = content.is_string() ? content.get<std::string>() : content.dump();
  for (const auto& c : m.value("tool_calls", json::array()))
    text += (text.empty() ? "" : " ") + std::string("calls ") + c.value("name", "") + "(" + c.value("args", json::object()).dump() + ")";
  std::cout << "  " << who << ": " << text << "\n";
}

// Prints a stream's events readably: model tokens as they come, on one line per message.
class EventPrinter {
 public:
  // Returns false for an error event.
  bool print(const std::string& event, const std::string& data) {
    json d = json::parse(data, nullptr, false);
    if (event.starts_with("messages") && d.is_array() && !d.empty() && d[0].is_object() &&
        d[0].value("type", "") == "AIMessageChunk") {
      const json& c = d[0];
      const std::string id = c.value("id", "");
      if (id != streaming_) {
        end_line();
        std::cout << "  ai: ";
        streaming_ = id;
      }
      std::cout << c.value("content", "");
      for (const auto& t : c.value("tool_calls", json::array()))
        std::cout << "calls " << t.value("name", "") << "(" << t.value("args", json::object()).dump() << ")";
      return true;
    }
    end_line();
    if (event == "metadata") {
      std::cout << "run " << d.value("run_id", "") << " (attempt " << d.value("attempt", 1) << ")\n";
    } else if (event.starts_with("updates")) {
      if (d.is_object())
        for (const auto& [node, writes] : d.items()) {
          if (node == "__interrupt__") {
            if (writes.empty()) std::cout << "  paused at a breakpoint\n";
            for (const auto& i : writes) std::cout << "  interrupted: " << i.value("value", json()).dump() << "\n";
            continue;
          }
          std::cout << "  step " << node;
          if (writes.is_object()) {
            std::string keys;
            for (const auto& [k, _] : writes.items()) keys += (keys.empty() ? "" : ", ") + k;
            if (!keys.empty()) std::cout << " wrote " << keys;
          }
          std::cout << "\n";
        }
    } else if (event.starts_with("messages")) {
      if (d.is_array() && !d.empty()) print_message(d[0]);
    } else if (event == "error") {
      std::cerr << "agentplane run: the run failed: " << d.value("error", "") << ": " << d.value("message", "") << "\n";
      return false;
    }
    return true;
  }
  void end_line() {
    if (streaming_.empty()) return;
    std::cout << "\n";
    streaming_.clear();
  }

 private:
  std::string streaming_;  // the id of the message whose tokens are being printed
};

}  // namespace

int run_agent(const ClientConfig& c, const std::string& assistant, std::string thread, const std::string& message,
              bool stream) {
  auto key = api_credential(c);
  if (!key) {
    std::cerr << "agentplane: " << key.error().message << "\n";
    return 2;
  }
  std::vector<std::pair<std::string, std::string>> h = {{"x-api-key", *key}};
  const std::string url = api_url(c);
  if (thread.empty()) {
    auto t = net::http_request(url, "POST", "/threads", h, "{}");
    if (!t || t->status != 200) {
      std::cerr << "agentplane run: cannot create a thread: " << (t ? t->body : t.error().message) << "\n";
      return 1;
    }
    thread = json::parse(t->body).value("thread_id", "");
  }
  json body = {{"assistant_id", assistant},
               {"input", {{"messages", json::array({{{"type", "human"}, {"content", message}}})}}}};
  if (!stream) {
    auto r = net::http_request(url, "POST", "/threads/" + thread + "/runs/wait", h, body.dump(), std::chrono::minutes(10));
    if (!r || r->status != 200) {
      std::cerr << "agentplane run: " << (r ? r->body : r.error().message) << "\n";
      return 1;
    }
    json v = json::parse(r->body, nullptr, false);
    if (v.is_object() && v.contains("__error__")) {
      std::cerr << "agentplane run: the run failed: " << v["__error__"].dump() << "\n";
      return 1;
    }
    if (v.is_object() && v.contains("messages") && v["messages"].is_array() && !v["messages"].empty())
      print_message(v["messages"].back());
    else
      std::cout << v.dump(2) << "\n";
    std::cout << "thread " << thread << "\n";
    return 0;
  }
  body["stream_mode"] = json::array({"updates", "messages-tuple"});
  std::string pending;
  bool ok = true;
  EventPrinter printer;
  auto r = net::http_stream(url, "POST", "/threads/" + thread + "/runs/stream", h, body.dump(), [&](std::string_view data) {
    pending.append(data);
    for (size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
      std::string block = pending.substr(0, end);
      pending.erase(0, end + 2);
      std::string event, payload;
      for (size_t pos = 0; pos < block.size();) {
        size_t nl = block.find('\n', pos);
        std::string line = block.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        if (line.starts_with("event: ")) event = line.substr(7);
        if (line.starts_with("data: ")) payload = line.substr(6);
        if (nl == std::string::npos) break;
        pos = nl + 1;
      }
      if (!event.empty()) ok = printer.print(event, payload) && ok;
      std::cout.flush();
    }
  });
  printer.end_line();
  if (!r) {
    std::cerr << "agentplane run: " << r.error().message << "\n";
    return 1;
  }
  if (r->status != 200) {
    std::cerr << "agentplane run: HTTP " << r->status << ": " << pending << "\n";
    return 1;
  }
  std::cout << "thread " << thread << "  (continue it with --thread " << thread << ")\n";
  return ok ? 0 : 1;
}

}  // namespace ap::app::cli
