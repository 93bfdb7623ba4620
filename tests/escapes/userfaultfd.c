/* userfaultfd: lets a process stall kernel accesses to its memory at will, a
 * building block of kernel race exploits. UFFD_USER_MODE_ONLY works unprivileged. */
#include "escape.h"
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (fd < 0) blocked("userfaultfd", errno);
    escaped("userfaultfd returned fd %ld", fd);
}
