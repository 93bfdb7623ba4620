/* Read argv[1]: a file outside the policy's readable paths, directly or through a
 * symlink placed in the workspace. */
#include "escape.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: read_file PATH");
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) blocked("open-read", errno);
    char buf[256] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) blocked("read", errno);
    buf[strcspn(buf, "\n")] = 0;
    escaped("read %s: %s", argv[1], buf);
}
