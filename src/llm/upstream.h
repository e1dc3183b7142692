// The client model calls go out on: the gateway's relays and the providers use net's pooled
// HTTP client through these names, so that callers of the model layer depend on llm only.
#pragma once

#include "net/http_client.h"

namespace ap::llm {

using UpstreamClient = net::HttpClient;
using UpstreamOptions = net::ClientOptions;
using UpstreamRequest = net::ClientRequest;
using UpstreamResponse = net::ClientResponse;
using UpstreamUrl = net::Url;

}  // namespace ap::llm
