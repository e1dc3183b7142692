#include "gateway/errors.h"

#include <nlohmann/json.hpp>

namespace ap::gateway {

int http_status(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kFailedPrecondition: return 409;
    case Code::kAborted: return 409;
    case Code::kPayloadTooLarge: return 413;
    case Code::kResourceExhausted: return 429;
    case Code::kCancelled: return 499;
    case Code::kUnimplemented: return 501;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    case Code::kInternal: return 500;
  }
  return 500;
}

Response error_response(const Error& error) {
  nlohmann::json body;
  body["detail"] = error.code == Code::kInternal ? std::string("internal error") : error.message;
  Response r = Response::json(http_status(error.code),
                              body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (error.code == Code::kUnauthenticated) r.headers.push_back({"www-authenticate", "Bearer"});
  return r;
}

}  // namespace ap::gateway
