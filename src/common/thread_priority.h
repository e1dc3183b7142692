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

// The process's own nice value (its main thread's; 0 if unreadable): what the processes it
// starts run at, whatever the priority of the thread that starts them (set it in the child).
inline int process_nice() {
  errno = 0;
  const int n = getpriority(PRIO_PROCESS, static_cast<id_t>(getpid()));
  return errno == 0 ? n : 0;
}

}  // namespace ap
