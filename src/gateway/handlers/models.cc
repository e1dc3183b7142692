// The model gateway: POST /v1/chat/completions and GET /v1/models (OpenAI's wire format),
// POST /v1/messages (Anthropic's), model routes (/v1/model-routes) and usage (/v1/usage).
// Upstream calls carry the tenant's own provider key from the vault, injected here; the client
// never sends it and it never appears in a response, log or metric. Streams are relayed event by
// event as they arrive. Every call leaves one usage record (llm/usage.h), including calls the
// client abandoned (then flagged disconnected, with estimated tokens if the upstream never said).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "auth/records.h"
#include "common/clock.h"
#include "common/json.h"
#include "gateway/cost_meter.h"
#include "gateway/errors.h"
#include "gateway/handlers/chat_body.h"
#include "gateway/handlers/audit_context.h"
#include "gateway/handlers/json_body.h"
#include "gateway/routes.h"
#include "llm/models.h"
#include "llm/sse.h"
#include "llm/upstream.h"
#include "ratelimit/limits.h"
#include "vault/credentials.h"

namespace ap::gateway {
namespace {

namespace asio = boost::asio;
using Task = asio::awaitable<Result<Response>>;
using steady = std::chrono::steady_clock;

enum class Family { kOpenAi, kAnthropic };

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Our own errors, in OpenAI's error format (both endpoints: clients of either SDK read it).
Response openai_error(int status, const std::string& message, const std::string& type, const std::string& code) {
  json body = {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
  return Response::json(status, dump(body));
}

Response openai_error(const Error& e) {
  const int status = http_status(e.code);
  std::string type = status == 401 ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status == 429 ? "rate_limit_error"
                     : status >= 500 ? "api_error"
                                     : "invalid_request_error";
  return openai_error(status, e.code == Code::kInternal ? "internal error" : e.message, type, std::string(code_name(e.code)));
}

// An upstream's error body, with any trace of the provider key removed.
std::string scrub(std::string body, const SecretString& key) {
  if (key.empty() || key.reveal().size() < 8) return body;
  const std::string k(key.reveal());
  for (size_t p = body.find(k); p != std::string::npos; p = body.find(k, p)) body.replace(p, k.size(), "[redacted]");
  return body;
}

// Everything a usage record needs that outlives the request's context (streams end later).
struct CallInfo {
  llm::ModelServices* models = nullptr;
  TenantId tenant;
  std::optional<Uuid> key_id;
  std::string request_id;
  std::shared_ptr<const llm::ModelRoute> route;
  std::string model;  // as the client named it
  steady::time_point start = steady::now();
  std::optional<double> ttft_ms;
  ratelimit::Reservation reservation;  // settled by record(), else with nothing used
  asio::any_io_executor ex;
  CostMeter* costs = nullptr;  // the shard's (calls end on the shard that started them)

  void mark_first_byte() {
    if (!ttft_ms) ttft_ms = std::chrono::duration<double, std::milli>(steady::now() - start).count();
  }
  void record(const llm::Usage& usage, int status, bool streamed, bool disconnected) {
    auto cost = llm::cost_of(usage, models->price_of(*route), models->price_version(*route));
    reservation.settle(usage.prompt_tokens + usage.completion_tokens, cost.micro_usd);
    if (costs) costs->add(tenant.to_string(), model, usage.prompt_tokens, usage.completion_tokens, cost.micro_usd, cost.unpriced);
    if (!models->usage) return;
    llm::UsageRecord r;
    r.tenant = tenant;
    r.at = std::chrono::system_clock::now();
    r.source = "gateway";
    r.request_id = request_id;
    r.key_id = key_id;
    r.model = model;
    r.provider = route->provider;
    r.upstream_model = route->upstream_model;
    r.usage = usage;
    r.cost = std::move(cost);
    r.ttft_ms = ttft_ms;
    r.duration_ms = std::chrono::duration<double, std::milli>(steady::now() - start).count();
    r.status = status;
    r.streamed = streamed;
    r.disconnected = disconnected;
    models->usage->record(std::move(r));
  }
};

// Watches a relayed SSE stream for usage, passing events through as soon as each is complete.
// For OpenAI streams where we added stream_options.include_usage ourselves, the usage-only
// chunk is dropped so the client sees exactly the stream it asked for.
class StreamTap {
 public:
  StreamTap(Family f, bool drop_usage_chunk) : family_(f), drop_usage_(drop_usage_chunk) {}

  std::string feed(std::string_view piece) {
    pending_.append(piece);
    std::string out;
    size_t pos = 0;
    while (true) {
      size_t end = pending_.find("\n\n", pos);
      size_t crlf = pending_.find("\r\n\r\n", pos);
      size_t sep = 2;
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
        end = crlf;
        sep = 4;
      }
      if (end == std::string::npos) break;
      std::string_view ev(pending_.data() + pos, end + sep - pos);
      if (!observe(ev)) out.append(ev);
      pos = end + sep;
    }
    pending_.erase(0, pos);
    return out;
  }
  std::string rest() { return std::exchange(pending_, {}); }
  bool got_usage() const { return got_usage_; }
  const llm::Usage& usage() const { return usage_; }
  int64_t content_events() const { return content_events_; }

 private:
  // True: drop the event.
  bool observe(std::string_view ev) {
    std::string_view event, data;
    size_t p = 0;
    while (p < ev.size()) {
      size_t nl = ev.find('\n', p);
      std::string_view line = ev.substr(p, nl == std::string_view::npos ? std::string_view::npos : nl - p);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.starts_with("data:")) data = line.substr(line.size() > 5 && line[5] == ' ' ? 6 : 5);
      if (line.starts_with("event:")) event = line.substr(line.size() > 6 && line[6] == ' ' ? 7 : 6);
      if (nl == std::string_view::npos) break;
      p = nl + 1;
    }
    if (data.empty() || data == "[DONE]") return false;
    if (family_ == Family::kOpenAi) {
      ++content_events_;
      const size_t u = data.find("\"usage\"");
      if (u == std::string_view::npos) return false;
      size_t v = data.find_first_not_of(" :", u + 7);
      if (v != std::string_view::npos && data.substr(v, 4) == "null") return false;
      auto chunk = openai_chunk_usage(data);
      if (!chunk) return false;
      usage_ = chunk->usage;
      got_usage_ = true;
      if (chunk->usage_only) --content_events_;
      return chunk->usage_only && drop_usage_;
    }
    if (event == "content_block_delta") {
      ++content_events_;
      return false;
    }
    if (event == "message_start" || event == "message_delta") {
      const bool start = event == "message_start";
      if (merge_anthropic_event_usage(data, start, usage_)) got_usage_ = got_usage_ || !start;
    }
    return false;
  }

  Family family_;
  bool drop_usage_;
  std::string pending_;
  llm::Usage usage_;
  bool got_usage_ = false;
  int64_t content_events_ = 0;
};

// Moves the admission's headers into the response (they are not needed after it).
void add_limit_headers(Response& r, std::vector<std::pair<std::string, std::string>>&& headers) {
  r.headers.reserve(r.headers.size() + headers.size());
  for (auto& [k, v] : headers) r.headers.push_back({std::move(k), std::move(v)});
  headers.clear();
}

// ---- scripted routes, rendered in either wire format ----

json openai_completion(const llm::ChatResult& res, const std::string& model) {
  json msg = llm::openai_message(res.message);
  if (!msg.contains("tool_calls")) msg["content"] = res.message.content;
  return {{"id", res.id},
          {"object", "chat.completion"},
          {"created", unix_seconds()},
          {"model", model},
          {"choices", json::array({{{"index", 0}, {"message", msg}, {"logprobs", nullptr}, {"finish_reason", res.finish_reason}}})},
          {"usage",
           {{"prompt_tokens", res.usage.prompt_tokens},
            {"completion_tokens", res.usage.completion_tokens},
            {"total_tokens", res.usage.prompt_tokens + res.usage.completion_tokens}}}};
}

std::vector<std::string> openai_chunks(const llm::ChatResult& res, const std::string& model, bool include_usage) {
  std::vector<std::string> out;
  const int64_t created = unix_seconds();
  auto chunk = [&](json delta, json finish) {
    json c = {{"id", res.id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
              {"choices", json::array({{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", std::move(finish)}}})}};
    out.push_back("data: " + c.dump() + "\n\n");
  };
  chunk({{"role", "assistant"}, {"content", ""}}, nullptr);
  const auto& text = res.message.content;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find(' ', start + 1);
    end = end == std::string::npos ? text.size() : end;
    chunk({{"content", text.substr(start, end - start)}}, nullptr);
    start = end;
  }
  for (size_t i = 0; i < res.message.tool_calls.size(); ++i) {
    const auto& tc = res.message.tool_calls[i];
    chunk({{"tool_calls", json::array({{{"index", i}, {"id", tc.id}, {"type", "function"},
                                        {"function", {{"name", tc.name}, {"arguments", tc.args.dump()}}}}})}},
          nullptr);
  }
  chunk(json::object(), res.finish_reason);
  if (include_usage) {
    json u = {{"id", res.id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model}, {"choices", json::array()},
              {"usage", {{"prompt_tokens", res.usage.prompt_tokens}, {"completion_tokens", res.usage.completion_tokens},
                         {"total_tokens", res.usage.prompt_tokens + res.usage.completion_tokens}}}};
    out.push_back("data: " + u.dump() + "\n\n");
  }
  out.push_back("data: [DONE]\n\n");
  return out;
}

std::string anthropic_stop(const std::string& finish) {
  return finish == "tool_calls" ? "tool_use" : finish == "length" ? "max_tokens" : "end_turn";
}

json anthropic_message(const llm::ChatResult& res, const std::string& model) {
  json content = json::array();
  if (!res.message.content.empty()) content.push_back({{"type", "text"}, {"text", res.message.content}});
  for (const auto& tc : res.message.tool_calls)
    content.push_back({{"type", "tool_use"}, {"id", tc.id}, {"name", tc.name}, {"input", tc.args}});
  return {{"id", "msg_" + res.id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", model},
          {"content", content},
          {"stop_reason", anthropic_stop(res.finish_reason)},
          {"stop_sequence", nullptr},
          {"usage", {{"input_tokens", res.usage.prompt_tokens}, {"output_tokens", res.usage.completion_tokens}}}};
}

std::vector<std::string> anthropic_events(const llm::ChatResult& res, const std::string& model) {
  std::vector<std::string> out;
  auto ev = [&](const char* name, const json& data) { out.push_back(std::string("event: ") + name + "\ndata: " + data.dump() + "\n\n"); };
  json start = anthropic_message(res, model);
  start["content"] = json::array();
  start["stop_reason"] = nullptr;
  start["usage"]["output_tokens"] = 1;
  ev("message_start", {{"type", "message_start"}, {"message", start}});
  int index = 0;
  if (!res.message.content.empty()) {
    ev("content_block_start", {{"type", "content_block_start"}, {"index", index}, {"content_block", {{"type", "text"}, {"text", ""}}}});
    const auto& text = res.message.content;
    for (size_t s = 0; s < text.size();) {
      size_t e = text.find(' ', s + 1);
      e = e == std::string::npos ? text.size() : e;
      ev("content_block_delta", {{"type", "content_block_delta"}, {"index", index}, {"delta", {{"type", "text_delta"}, {"text", text.substr(s, e - s)}}}});
      s = e;
    }
    ev("content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
    ++index;
  }
  for (const auto& tc : res.message.tool_calls) {
    ev("content_block_start", {{"type", "content_block_start"}, {"index", index},
                               {"content_block", {{"type", "tool_use"}, {"id", tc.id}, {"name", tc.name}, {"input", json::object()}}}});
    ev("content_block_delta", {{"type", "content_block_delta"}, {"index", index},
                               {"delta", {{"type", "input_json_delta"}, {"partial_json", tc.args.dump()}}}});
    ev("content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
    ++index;
  }
  ev("message_delta", {{"type", "message_delta"}, {"delta", {{"stop_reason", anthropic_stop(res.finish_reason)}, {"stop_sequence", nullptr}}},
                       {"usage", {{"output_tokens", res.usage.completion_tokens}}}});
  ev("message_stop", {{"type", "message_stop"}});
  return out;
}

Task serve_scripted(std::shared_ptr<CallInfo> call, Family family, const json& body, bool stream) {
  auto parsed = family == Family::kOpenAi ? llm::call_from_openai(body) : llm::call_from_anthropic(body);
  if (!parsed) co_return openai_error(parsed.error());
  auto res = llm::scripted_reply(call->route->script, *parsed);
  if (!res) co_return openai_error(res.error());
  if (!stream) {
    call->mark_first_byte();
    call->record(res->usage, 200, false, false);
    json out = family == Family::kOpenAi ? openai_completion(*res, call->model) : anthropic_message(*res, call->model);
    Response r = Response::json(200, dump(out));
    add_limit_headers(r, call->reservation.take_headers());
    co_return r;
  }
  const bool include_usage = body.contains("stream_options") && body["stream_options"].is_object() &&
                             body["stream_options"].value("include_usage", false);
  auto pieces = family == Family::kOpenAi ? openai_chunks(*res, call->model, include_usage) : anthropic_events(*res, call->model);
  const int64_t delay = call->route->script.is_object() ? call->route->script.value("token_delay_ms", int64_t{0}) : 0;
  Response r;
  r.content_type = "text/event-stream";
  r.headers.push_back({"cache-control", "no-cache"});
  add_limit_headers(r, call->reservation.take_headers());
  r.head_with_body = delay == 0;  // all here: the head goes with the first event
  r.stream = [call, pieces = std::move(pieces), usage = res->usage, delay](BodyWriter& w) -> asio::awaitable<void> {
    bool gone = false;
    for (size_t i = 0; i < pieces.size(); ++i) {
      const auto& p = pieces[i];
      if (delay > 0) {
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(delay));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      call->mark_first_byte();
      bool sent;
      if (i + 1 == pieces.size())
        sent = co_await w.finish(p);
      else
        sent = co_await w.write(p);
      if (!sent) {
        gone = true;
        break;
      }
    }
    call->record(usage, 200, true, gone);
  };
  co_return r;
}

// ---- upstream routes ----

// The client's body with the route's upstream model and, for an OpenAI stream, usage asked for.
// A repeated top-level key is written once, with its last value: the one we checked and priced.
// Nothing if nlohmann's reader refuses what simdjson's accepted (neither should).
std::optional<std::string> rewritten(const std::string& text, const std::string& upstream_model, bool add_include_usage) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return std::nullopt;
  body["model"] = upstream_model;
  if (add_include_usage) {
    if (!body["stream_options"].is_object()) body["stream_options"] = json::object();
    body["stream_options"]["include_usage"] = true;
  }
  return body.dump();
}

Task proxy(RequestContext& ctx, std::shared_ptr<CallInfo> call, Family family, const ChatRequest& chat, SecretString key) {
  const auto& route = *call->route;
  const bool stream = chat.stream;
  // The client's own bytes go upstream unless something in them must change (no second
  // serialisation on the common path), or they repeat a key: the upstream might read the other
  // one than we checked and priced.
  const bool drop_usage_chunk = family == Family::kOpenAi && stream && !chat.include_usage;  // we need the counts; the client did not ask
  const bool rewrite = chat.repeated_keys || chat.model != route.upstream_model || drop_usage_chunk;
  llm::UpstreamRequest req;
  req.method = "POST";
  std::string base = route.base_url;
  if (base.empty()) base = family == Family::kOpenAi ? "https://api.openai.com/v1" : "https://api.anthropic.com";
  while (!base.empty() && base.back() == '/') base.pop_back();
  req.url = base + (family == Family::kOpenAi ? "/chat/completions" : "/v1/messages");
  req.headers.emplace_back("content-type", "application/json");
  if (stream) req.headers.emplace_back("accept", "text/event-stream");
  if (family == Family::kOpenAi) {
    if (!key.empty()) req.headers.emplace_back("authorization", "Bearer " + std::string(key.reveal()));
  } else {
    if (!key.empty()) req.headers.emplace_back("x-api-key", std::string(key.reveal()));
    auto v = ctx.request.header("anthropic-version");
    req.headers.emplace_back("anthropic-version", v.empty() ? "2023-06-01" : std::string(v));
    if (auto beta = ctx.request.header("anthropic-beta"); !beta.empty()) req.headers.emplace_back("anthropic-beta", std::string(beta));
  }
  if (rewrite) {
    auto text = rewritten(ctx.request.body, route.upstream_model, drop_usage_chunk);
    if (!text) co_return openai_error(400, "malformed JSON body", "invalid_request_error", "invalid_request");
    req.body = std::move(*text);
  } else {
    req.body = ctx.request.body;
  }
  auto sent = co_await ctx.http->send(std::move(req));
  if (!sent) {
    call->record({}, 502, stream, false);
    const Error& e = sent.error();
    if (e.code == Code::kPermissionDenied) co_return openai_error(502, e.message, "api_error", "upstream_refused_by_egress_policy");
    if (e.code == Code::kDeadlineExceeded) co_return openai_error(504, e.message, "api_error", "upstream_timeout");
    co_return openai_error(502, e.message, "api_error", "upstream_unavailable");
  }
  std::shared_ptr<llm::UpstreamResponse> up = std::move(*sent);
  const std::string content_type = up->header("content-type");
  if (up->status() != 200 || !stream || !content_type.starts_with("text/event-stream")) {
    auto all = co_await up->read_all();
    if (!all) {
      call->record({}, 502, false, false);
      co_return openai_error(502, all.error().message, "api_error", "upstream_unavailable");
    }
    call->mark_first_byte();
    llm::Usage usage;
    if (up->status() == 200) {
      auto read = family == Family::kOpenAi ? openai_reply_usage(*all) : anthropic_reply_usage(*all);
      if (read) {
        usage = *read;
      } else {  // no usage we can read: our estimate, flagged (the prompt's bound; ~4 bytes a token)
        usage.estimated = true;
        usage.prompt_tokens = static_cast<int64_t>(chat.text_bytes);
        usage.completion_tokens = static_cast<int64_t>(all->size() + 3) / 4;
      }
    }
    call->record(usage, up->status(), false, false);
    Response r{up->status(), content_type.empty() ? "application/json" : content_type, scrub(std::move(*all), key), {}};
    if (auto rid = up->header("x-request-id"); !rid.empty()) r.headers.push_back({"x-upstream-request-id", rid});
    add_limit_headers(r, call->reservation.take_headers());
    co_return r;
  }
  Response r;
  r.content_type = content_type;
  r.headers.push_back({"cache-control", "no-cache"});
  add_limit_headers(r, call->reservation.take_headers());
  const auto prompt_bound = static_cast<int64_t>(chat.text_bytes);
  // The head goes out with the reply's first piece when that is here already (one write), else
  // at once (flush below).
  r.head_with_body = true;
  r.stream = [call, up, family, drop_usage_chunk, prompt_bound](BodyWriter& w) mutable -> asio::awaitable<void> {
    StreamTap tap(family, drop_usage_chunk);
    bool gone = false, cut = false;
    if (!up->ready()) gone = !co_await w.flush();  // the model is still thinking
    while (!gone) {
      auto piece = co_await up->read();
      if (!piece) {
        cut = true;
        break;
      }
      if (piece->empty()) break;
      call->mark_first_byte();
      std::string out = tap.feed(*piece);
      if (up->done()) {  // the last piece: with the body's end, in one write
        out += tap.rest();
        gone = !co_await w.finish(std::move(out));
        break;
      }
      if (!out.empty() && !co_await w.write(std::move(out))) {
        gone = true;
        break;
      }
    }
    if (!gone) {
      if (auto rest = tap.rest(); !rest.empty()) co_await w.write(std::move(rest));
    }
    up.reset();  // a stream left early: closing the connection cancels the upstream request
    llm::Usage usage = tap.usage();
    if (!tap.got_usage()) {  // cut short: our estimate, flagged (the prompt's bound; one token per content event)
      usage.estimated = true;
      usage.completion_tokens = std::max(usage.completion_tokens, tap.content_events());
      if (usage.prompt_tokens == 0) usage.prompt_tokens = prompt_bound;
    }
    call->record(usage, cut ? 502 : 200, true, gone);
  };
  co_return r;
}

// `api_counted`: set once the API request limit has been taken (with the model's limits).
Task chat_admitted(RequestContext& ctx, Family family, bool* api_counted) {
  auto* models = ctx.services.models;
  if (!models || !ctx.http) co_return openai_error(Error::unavailable("the model gateway is not configured on this server"));
  auto chat = read_chat_request(ctx.request.body);
  if (!chat) co_return openai_error(400, chat.error().message, "invalid_request_error", "invalid_request");
  const bool stream = chat->stream;
  auto call = std::make_shared<CallInfo>();
  call->models = models;
  call->tenant = ctx.tenant();
  call->request_id = ctx.request_id;
  call->model = chat->model;
  call->ex = co_await asio::this_coro::executor;
  call->costs = ctx.costs;
  if (!ctx.principal.key.is_nil()) call->key_id = ctx.principal.key.uuid();
  auto route = co_await models->routes.find(ctx.pool, ctx.tenant(), call->model);
  if (!route) {
    if (route.error().code == Code::kNotFound)
      co_return openai_error(404, "The model '" + call->model + "' does not exist or you do not have access to it.",
                             "invalid_request_error", "model_not_found");
    co_return openai_error(route.error());
  }
  call->route = *route;
  const bool anthropic_route = call->route->provider == "anthropic";
  if (call->route->provider != "scripted" && anthropic_route != (family == Family::kAnthropic))
    co_return openai_error(400,
                           "model '" + call->model + "' is an " + (anthropic_route ? "Anthropic" : "OpenAI-compatible") +
                               " route: call it at " + (anthropic_route ? "/v1/messages" : "/v1/chat/completions"),
                           "invalid_request_error", "wrong_endpoint_for_model");
  if (models->limits) {
    const int64_t max_out = chat->max_tokens.value_or(4096);
    const int64_t tokens = static_cast<int64_t>(chat->text_bytes) + max_out;
    auto price = models->price_of(*call->route);
    llm::Usage worst;
    worst.prompt_tokens = tokens - max_out;
    worst.completion_tokens = max_out;
    const int64_t worst_cost = llm::cost_of(worst, price, "").micro_usd;
    const std::string upstream = call->route->credential.empty() ? "" : ctx.tenant().to_string() + "/" + call->route->credential;
    const std::string key_id = call->key_id ? call->key_id->to_string() : std::string();
    auto admission = co_await models->limits->admit_model(ctx.pool, ctx.tenant(), key_id, call->model, tokens, worst_cost,
                                                          upstream, /*api_request=*/true);
    *api_counted = true;
    if (!admission) co_return openai_error(admission.error());
    if (!admission->allowed) {
      Response r = admission->budget ? openai_error(429, admission->message, "insufficient_quota", "budget_exceeded")
                                     : openai_error(429, admission->message, "rate_limit_error", "rate_limit_exceeded");
      add_limit_headers(r, std::move(admission->headers));
      co_return r;
    }
    call->reservation = ratelimit::Reservation(models->limits, call->ex, std::move(*admission));
  }
  if (call->route->provider == "scripted") {
    const json body = json::parse(ctx.request.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) co_return openai_error(400, "malformed JSON body", "invalid_request_error", "invalid_request");
    co_return co_await serve_scripted(call, family, body, stream);
  }
  SecretString key;
  if (!call->route->credential.empty()) {
    if (!ctx.services.credentials) co_return openai_error(Error::unavailable("the credential vault is not configured"));
    const std::string purpose = "model gateway: " + call->model;
    auto url = llm::UpstreamUrl::parse(llm::effective_base_url(call->route->provider, call->route->base_url));
    if (!url) co_return openai_error(url.error());
    vault::Destination to{url->host, false};
    auto k = co_await ctx.services.credentials->use(audit_context(ctx), call->route->credential, purpose, to);
    if (!k) {
      call->record({}, 424, stream, false);
      if (k.error().code == Code::kNotFound)
        co_return openai_error(424, "model '" + call->model + "' uses credential '" + call->route->credential +
                                        "', which is not in the tenant's vault", "invalid_request_error", "credential_missing");
      co_return openai_error(k.error());
    }
    key = std::move(*k);
  }
  co_return co_await proxy(ctx, call, family, *chat, std::move(key));
}

// The model endpoints check the API request limit together with the model's limits (one limiter
// round trip); a request that fails before that (bad body, unknown model) still counts.
Task chat(RequestContext& ctx, Family family) {
  bool api_counted = false;
  auto r = co_await chat_admitted(ctx, family, &api_counted);
  auto* models = ctx.services.models;
  if (!api_counted && models && models->limits) (void)co_await models->limits->admit_request(ctx.pool, ctx.tenant());
  co_return r;
}

Task chat_completions(RequestContext& ctx) { co_return co_await chat(ctx, Family::kOpenAi); }
Task messages(RequestContext& ctx) { co_return co_await chat(ctx, Family::kAnthropic); }

json model_object(const llm::ModelRoute& r) {
  return {{"id", r.name}, {"object", "model"}, {"created", r.created_unix}, {"owned_by", r.provider}};
}

Result<llm::ModelServices*> models_of(const RequestContext& ctx) {
  if (!ctx.services.models) return Error::unavailable("the model gateway is not configured on this server");
  return ctx.services.models;
}

Task list_models(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* models, models_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(auto routes, co_await models->routes.list(ctx.pool, ctx.tenant()));
  json data = json::array();
  for (const auto& r : routes) data.push_back(model_object(r));
  co_return Response::json(200, dump(json{{"object", "list"}, {"data", data}}));
}

Task get_model(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* models, models_of(ctx));
  const std::string name = percent_decode(ctx.param("model"));
  auto r = co_await models->routes.find(ctx.pool, ctx.tenant(), name);
  if (!r) co_return openai_error(r.error().code == Code::kNotFound ? Error::not_found("The model '" + name + "' does not exist") : r.error());
  co_return Response::json(200, dump(model_object(**r)));
}

Task put_route(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* models, models_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, object_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(auto route, llm::ModelRoute::parse(percent_decode(ctx.param("name")), body));  // not awaited
  AP_CO_ASSIGN_OR_RETURN(auto stored, co_await models->routes.put(ctx.pool, ctx.tenant(), std::move(route)));
  co_return Response::json(stored.second ? 201 : 200, dump(stored.first.to_json()));
}

Task list_routes(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* models, models_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(auto routes, co_await models->routes.list(ctx.pool, ctx.tenant()));
  json items = json::array();
  for (const auto& r : routes) items.push_back(r.to_json());
  co_return Response::json(200, dump(json{{"items", items}}));
}

Task get_route(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* models, models_of(ctx));
  const std::string name = percent_decode(ctx.param("name"));
  AP_CO_ASSIGN_OR_RETURN(auto r, co_await models->routes.find(ctx.pool, ctx.tenant(), name));
  co_return Response::json(200, dump(r->to_json()));
}

Task delete_route(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* models, models_of(ctx));
  std::string name = percent_decode(ctx.param("name"));
  AP_CO_RETURN_IF_ERROR(co_await models->routes.remove(ctx.pool, ctx.tenant(), name));
  co_return Response::json(200, dump(json{{"name", name}, {"deleted", true}}));
}

llm::UsageQuery usage_query(const RequestContext& ctx) {
  llm::UsageQuery q;
  q.from = ctx.request.query_param("from").value_or("");
  q.to = ctx.request.query_param("to").value_or("");
  q.group_by = ctx.request.query_param("group_by").value_or("model");
  return q;
}

Task usage(RequestContext& ctx) {
  llm::UsageQuery q = usage_query(ctx);  // (g++ 12: no temporaries in co_await calls)
  AP_CO_ASSIGN_OR_RETURN(auto body, co_await llm::query_usage(ctx.pool, ctx.tenant(), std::move(q)));
  co_return Response::json(200, std::move(body));
}

// The operator's view of one tenant's usage (billing): the same report, admin token.
Task tenant_usage(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto tenant, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  AP_CO_RETURN_IF_ERROR(co_await auth::get_tenant(ctx.pool, tenant));  // NotFound
  llm::UsageQuery q = usage_query(ctx);
  AP_CO_ASSIGN_OR_RETURN(auto body, co_await llm::query_usage(ctx.pool, tenant, std::move(q)));
  co_return Response::json(200, std::move(body));
}

}  // namespace

void add_model_routes(Router& r) {
  r.add({"POST", "/v1/chat/completions", AuthMode::kTenant, auth::kScopeModels, chat_completions, false, true});
  r.add({"POST", "/v1/messages", AuthMode::kTenant, auth::kScopeModels, messages, false, true});
  r.add({"GET", "/v1/models", AuthMode::kTenant, auth::kScopeModels, list_models});
  r.add({"GET", "/v1/models/{model}", AuthMode::kTenant, auth::kScopeModels, get_model});
  r.add({"PUT", "/v1/model-routes/{name}", AuthMode::kTenant, auth::kScopeCredentials, put_route});
  r.add({"GET", "/v1/model-routes", AuthMode::kTenant, auth::kScopeModels, list_routes});
  r.add({"GET", "/v1/model-routes/{name}", AuthMode::kTenant, auth::kScopeModels, get_route});
  r.add({"DELETE", "/v1/model-routes/{name}", AuthMode::kTenant, auth::kScopeCredentials, delete_route});
  r.add({"GET", "/v1/usage", AuthMode::kTenant, auth::kScopeRead, usage});
  r.add({"GET", "/v1/tenants/{tenant_id}/usage", AuthMode::kAdmin, 0, tenant_usage});
}

}  // namespace ap::gateway
