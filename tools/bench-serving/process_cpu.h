// CPU time this process has used (user + system, all threads), to report what the
// benchmark client itself took from the machine while it measured.
#pragma once

#include <sys/resource.h>

namespace dsv3::bench {

inline double ProcessCpuSeconds() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace dsv3::bench
