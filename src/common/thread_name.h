// Names the calling thread as `top -H`, `ps -L`, gdb and perf show it ("ap-io-0", "ap-worker"):
// at most 15 characters (the kernel's limit; longer names are cut).
#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace ap {

inline void set_thread_name(std::string_view name) {
  const std::string n(name.substr(0, 15));
  pthread_setname_np(pthread_self(), n.c_str());
}

}  // namespace ap
