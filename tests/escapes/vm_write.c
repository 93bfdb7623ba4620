/* process_vm_writev into the parent (the launcher under capsule): write another
 * process's memory without ptrace. To stay harmless when it works, the program
 * writes back the bytes it just read, near the top of the parent's stack (its
 * environment strings). */
#include "escape.h"
#include <inttypes.h>
#include <sys/uio.h>
#include <unistd.h>

/* The end of the parent's [stack] mapping, 0 when /proc says nothing. */
static uintptr_t stack_end(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) return 0;
    char line[512];
    uintptr_t start, end, found = 0;
    while (fgets(line, sizeof line, maps)) {
        if (strstr(line, "[stack]") && sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &start, &end) == 2) found = end;
    }
    fclose(maps);
    return found;
}

int main(void) {
    pid_t parent = getppid();
    uintptr_t end = stack_end(parent);
    char bytes[8] = {0};
    /* Without a known address the write goes to page 0: it fails with EFAULT if the
     * call is allowed at all, and changes nothing either way. */
    void *remote = end ? (void *)(end - 64) : (void *)8;
    struct iovec local_iov = {.iov_base = bytes, .iov_len = sizeof bytes};
    struct iovec remote_iov = {.iov_base = remote, .iov_len = sizeof bytes};
    if (end && process_vm_readv(parent, &local_iov, 1, &remote_iov, 1, 0) != (ssize_t)sizeof bytes) {
        remote_iov.iov_base = (void *)8;
    }
    if (process_vm_writev(parent, &local_iov, 1, &remote_iov, 1, 0) != (ssize_t)sizeof bytes) {
        blocked("process_vm_writev", errno);
    }
    escaped("wrote %zu bytes into the parent %d at %p", sizeof bytes, parent, remote);
}
