// Runs blocking work (the graph engine, the checkpointer's blocking connections) on a thread
// pool and resumes the awaiting coroutine on its own executor.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

namespace ap::control {

namespace detail {
template <class F>
auto call(F* f) -> boost::asio::awaitable<std::optional<decltype((*f)())>> {
  co_return (*f)();
}
}  // namespace detail

// `f` is taken by reference, never copied into a coroutine frame (g++ 12 destroys such copies
// of lambdas twice): a temporary lambda lives until the caller's co_await expression ends.
template <class F>
auto run_blocking(boost::asio::thread_pool& pool, F&& f) -> boost::asio::awaitable<decltype(f())> {
  auto out = co_await boost::asio::co_spawn(pool, detail::call(&f), boost::asio::use_awaitable);
  co_return std::move(*out);
}

}  // namespace ap::control
