// The one place that maps error codes to HTTP statuses, and renders errors for the agent and
// platform APIs as {"detail": "..."}. Thread-safe.
#pragma once

#include "common/error.h"
#include "gateway/http.h"

namespace ap::gateway {

int http_status(Code code);
// {"detail": message}; Internal errors are rendered as "internal error" (the detail is logged
// by the caller with the request id, never sent).
Response error_response(const Error& error);

}  // namespace ap::gateway
