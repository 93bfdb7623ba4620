/* Create argv[1] and write to it: a path outside the policy's writable ones. */
#include "escape.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: write_file PATH");
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) blocked("open-write", errno);
    if (write(fd, "escaped\n", 8) != 8) blocked("write", errno);
    close(fd);
    escaped("wrote %s", argv[1]);
}
