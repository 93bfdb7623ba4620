/* io_uring: a second system-call interface whose operations seccomp never sees. */
#include "escape.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(SYS_io_uring_setup, 8, &params);
    if (fd < 0) blocked("io_uring_setup", errno);
    escaped("io_uring_setup returned fd %ld", fd);
}
