/* Connect to the pathname UNIX socket argv[1], outside every path the policy grants,
 * and send a line: a socket like /run/docker.sock is a way out of any sandbox. */
#include "escape.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: unix_connect PATH");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) blocked("socket-unix", errno);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof addr.sun_path) fail("path too long");
    strcpy(addr.sun_path, argv[1]);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) blocked("connect-unix", errno);
    if (write(fd, "hello", 5) != 5) fail("write: %s", strerror(errno));
    escaped("connected to %s", argv[1]);
}
