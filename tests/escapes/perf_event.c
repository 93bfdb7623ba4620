/* perf_event_open: a large kernel attack surface and a side channel. A software
 * counter on the process itself, user space only, is allowed unprivileged at
 * kernel.perf_event_paranoid <= 2. */
#include "escape.h"
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    if (fd < 0) blocked("perf_event_open", errno);
    escaped("perf_event_open returned fd %ld", fd);
}
