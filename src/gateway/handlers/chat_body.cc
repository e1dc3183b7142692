#include "gateway/handlers/chat_body.h"

#include <simdjson.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

namespace ap::gateway {
namespace {

namespace dom = simdjson::dom;

// A parser per thread keeps its buffers between documents (~15 bytes per byte of the largest
// one); a document over 1 MiB gets a parser of its own so that the thread does not hold that
// afterwards. The element a parse returns lives until the parser's next parse: callers read
// what they need before parsing again.
constexpr size_t kKeptCapacity = 1 << 20;

struct Parsed {
  std::optional<dom::parser> own;
  std::string redone;  // nlohmann's re-serialisation of the text (see parse)
  dom::element root;
  simdjson::error_code error = simdjson::UNINITIALIZED;
  bool repeated_top_keys = false;  // known only for a redone text
  bool ok() const { return error == simdjson::SUCCESS; }
};

// simdjson, skipping a leading UTF-8 BOM as nlohmann does. A text it refuses for a number
// (JSON allows integers beyond 64 bits: a tool schema's uint64 bound, or whatever a model put
// in a tool call's input) is read by nlohmann, which keeps such a number as a double, and its
// re-serialisation is parsed instead.
void parse(std::string_view text, Parsed& out) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  thread_local dom::parser shared;
  dom::parser* p = text.size() > kKeptCapacity ? &out.own.emplace() : &shared;
  out.error = p->parse(text.data(), text.size()).get(out.root);
  if (out.error != simdjson::NUMBER_ERROR) return;
  size_t top_keys = 0;
  auto doc = nlohmann::json::parse(
      text,
      [&top_keys](int depth, nlohmann::json::parse_event_t e, nlohmann::json&) {
        top_keys += e == nlohmann::json::parse_event_t::key && depth == 1;
        return true;
      },
      /*allow_exceptions=*/false);
  if (doc.is_discarded()) return;
  out.repeated_top_keys = doc.is_object() && top_keys != doc.size();
  out.redone = doc.dump();
  if (out.redone.size() > kKeptCapacity && !out.own) p = &out.own.emplace();
  out.error = p->parse(out.redone.data(), out.redone.size()).get(out.root);
}

// The member `key` of `o`: its last occurrence when it repeats, as the readers that build
// documents take it (simdjson's own lookup takes the first).
simdjson::simdjson_result<dom::element> member(dom::object o, std::string_view key) {
  std::optional<dom::element> found;
  for (dom::key_value_pair f : o)
    if (f.key == key) found = f.value;
  if (!found) return simdjson::NO_SUCH_FIELD;
  return simdjson::simdjson_result<dom::element>(dom::element(*found));
}

simdjson::simdjson_result<dom::element> member(dom::element e, std::string_view key) {
  dom::object o;
  if (auto error = e.get_object().get(o)) return error;
  return member(o, key);
}

int64_t num(dom::object o, std::string_view key) {
  int64_t v = 0;
  return member(o, key).get_int64().get(v) ? 0 : v;
}

void read_openai_usage(dom::object u, llm::Usage& out) {
  out.prompt_tokens = num(u, "prompt_tokens");
  out.completion_tokens = num(u, "completion_tokens");
  dom::object d;
  if (!member(u, "prompt_tokens_details").get_object().get(d)) out.cached_tokens = num(d, "cached_tokens");
  if (!member(u, "completion_tokens_details").get_object().get(d)) out.reasoning_tokens = num(d, "reasoning_tokens");
}

// Anthropic's input_tokens excludes cache reads and writes; ours includes them. message_start
// carries the input counts; message_delta the output so far (and, lately, input counts too).
void read_anthropic_usage(dom::object u, llm::Usage& out, bool start) {
  int64_t ignored = 0;
  if (start || !member(u, "input_tokens").get_int64().get(ignored)) {
    out.cached_tokens = num(u, "cache_read_input_tokens");
    out.cache_creation_tokens = num(u, "cache_creation_input_tokens");
    out.prompt_tokens = num(u, "input_tokens") + out.cached_tokens + out.cache_creation_tokens;
  }
  int64_t output = 0;
  if (!member(u, "output_tokens").get_int64().get(output)) out.completion_tokens = output;
}

// The top-level `usage` object of a whole reply, read by `read`.
template <class Read>
std::optional<llm::Usage> reply_usage(std::string_view reply, Read read) {
  Parsed doc;
  parse(reply, doc);
  dom::object u;
  if (!doc.ok() || member(doc.root, "usage").get_object().get(u)) return std::nullopt;
  llm::Usage out;
  read(u, out);
  return out;
}

}  // namespace

Result<ChatRequest> read_chat_request(std::string_view body) {
  Parsed doc;
  parse(body, doc);
  if (doc.error == simdjson::DEPTH_ERROR)
    return Error::invalid_argument("JSON body nested more than " + std::to_string(simdjson::DEFAULT_MAX_DEPTH) + " levels deep");
  if (!doc.ok()) return Error::invalid_argument("malformed JSON body");
  dom::object top;
  if (doc.root.get_object().get(top)) return Error::invalid_argument("request body must be a JSON object");
  ChatRequest r;
  // Fields in order, a later occurrence of a key overriding an earlier one.
  std::optional<dom::element> model, messages, stream, stream_options, max_tokens, max_completion_tokens, system, tools;
  std::vector<std::string_view> keys;
  keys.reserve(16);
  for (dom::key_value_pair f : top) {
    keys.push_back(f.key);
    if (f.key == "model") model = f.value;
    else if (f.key == "messages") messages = f.value;
    else if (f.key == "stream") stream = f.value;
    else if (f.key == "stream_options") stream_options = f.value;
    else if (f.key == "max_tokens") max_tokens = f.value;
    else if (f.key == "max_completion_tokens") max_completion_tokens = f.value;
    else if (f.key == "system") system = f.value;
    else if (f.key == "tools") tools = f.value;
  }
  std::sort(keys.begin(), keys.end());
  r.repeated_keys = doc.repeated_top_keys || std::adjacent_find(keys.begin(), keys.end()) != keys.end();

  std::string_view name;
  if (!model || model->get_string().get(name)) return Error::invalid_argument("model is required and must be a string");
  r.model = std::string(name);
  dom::array list;
  if (!messages || messages->get_array().get(list) || list.size() == 0)
    return Error::invalid_argument("messages is required and must be a non-empty array");
  if (stream && stream->get_bool().get(r.stream)) return Error::invalid_argument("stream must be a boolean");
  bool include = false;
  if (stream_options && stream_options->is_object())
    r.include_usage = !member(*stream_options, "include_usage").get_bool().get(include) && include;
  // An integer bound, as given (at least 1; huge ones capped so that sums cannot overflow).
  constexpr int64_t kCap = int64_t{1} << 40;
  for (const auto& e : {max_completion_tokens, max_tokens}) {
    if (!e) continue;
    int64_t v = 0;
    uint64_t u = 0;
    if (!e->get_int64().get(v)) r.max_tokens = std::clamp<int64_t>(v, 1, kCap);
    else if (!e->get_uint64().get(u)) r.max_tokens = kCap;
    if (r.max_tokens) break;
  }
  for (const auto& e : {messages, system, tools})
    if (e) r.text_bytes += simdjson::to_string(*e).size();
  return r;
}

std::optional<llm::Usage> openai_reply_usage(std::string_view reply) {
  return reply_usage(reply, read_openai_usage);
}

std::optional<llm::Usage> anthropic_reply_usage(std::string_view reply) {
  return reply_usage(reply, [](dom::object u, llm::Usage& out) { read_anthropic_usage(u, out, true); });
}

std::optional<ChunkUsage> openai_chunk_usage(std::string_view data) {
  Parsed doc;
  parse(data, doc);
  dom::object u;
  if (!doc.ok() || member(doc.root, "usage").get_object().get(u)) return std::nullopt;
  ChunkUsage out;
  read_openai_usage(u, out.usage);
  dom::array choices;
  out.usage_only = !member(doc.root, "choices").get_array().get(choices) && choices.size() == 0;
  return out;
}

bool merge_anthropic_event_usage(std::string_view data, bool start, llm::Usage& into) {
  Parsed doc;
  parse(data, doc);
  dom::object u;
  if (!doc.ok()) return false;
  dom::element at = doc.root;
  if (start && member(doc.root, "message").get(at)) return false;
  if (member(at, "usage").get_object().get(u)) return false;
  read_anthropic_usage(u, into, start);
  return true;
}

}  // namespace ap::gateway
