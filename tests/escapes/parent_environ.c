/* Read the parent's environment through /proc/PPID/environ. The launcher passes the
 * command a clean environment, but keeps the caller's own (tokens, keys): reading it
 * back would undo the cleaning. The secret is CAPSULE_TEST_SECRET, set by the test. */
#include "escape.h"
#include <fcntl.h>
#include <unistd.h>

int main(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", getppid());
    int fd = open(path, O_RDONLY);
    if (fd < 0) blocked("open-parent-environ", errno);
    static char env[1 << 16];
    ssize_t n = read(fd, env, sizeof env - 1);
    if (n < 0) blocked("read-parent-environ", errno);
    for (char *entry = env; entry < env + n; entry += strlen(entry) + 1) {
        if (strncmp(entry, "CAPSULE_TEST_SECRET=", 20) == 0) escaped("the parent's %s", entry);
    }
    fail("no CAPSULE_TEST_SECRET in %s (%zd bytes)", path, n);
}
