// Sync-first HTTP/1.1 I/O over Beast, for the server (gateway/server.cc) and the client
// (net/http_client.cc): what the read buffer already holds is parsed at once, and what a
// non-blocking socket takes at once is written at once; only the rest goes through the event
// loop. (An asynchronous operation that finds its bytes already there still completes through
// the scheduler: a trip per operation, several per proxied request.) Beast does all the parsing
// and serialising; these only choose when to wait. Include from .cc files only (Beast).
#pragma once

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/write.hpp>
#include <cstddef>

namespace ap::net {

// Parses what `buffer` already holds into `parser`: the header only when `header_only`, else as
// much of the message as is there. Running out of input (need_more) is not an error: the caller
// reads more. A buffer_body parser's full body buffer returns need_buffer.
template <class Parser, class Buffer>
boost::beast::error_code parse_buffered(Parser& parser, Buffer& buffer, bool header_only) {
  boost::beast::error_code ec;
  while (buffer.size() > 0 && !parser.is_done() && !(header_only && parser.is_header_done())) {
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == boost::beast::http::error::need_more) return {};
    if (ec || used == 0) return ec;
  }
  return ec;
}

// Writes as much of the serializer's message as the socket takes without waiting (`socket` in
// non-blocking mode). A full socket buffer is not an error: the caller writes the rest
// asynchronously (`sr.is_done()` says whether anything is left).
template <class Socket, class Serializer>
boost::beast::error_code write_now(Socket& socket, Serializer& sr) {
  boost::beast::error_code ec;
  while (!sr.is_done()) {
    boost::beast::http::write_some(socket, sr, ec);
    if (ec == boost::asio::error::would_block) return {};
    if (ec) return ec;
  }
  return ec;
}

}  // namespace ap::net
