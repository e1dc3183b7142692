// Scheduling priority of the calling thread (Linux: each thread has its own nice value).
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace ap {

// Sets the calling thread's nice value (-20 .. 19; lower runs sooner). Below the current one it
// needs CAP_SYS_NICE (or RLIMIT_NICE): returns the errno when refused, 0 when set.
inline int set_thread_nice(int nice) {
  return setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice) == 0 ? 0 : errno;
}

}  // namespace ap
