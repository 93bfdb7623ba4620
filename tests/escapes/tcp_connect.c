/* A TCP connection to 127.0.0.1:argv[1] (a listener the test started): the network
 * the default policy forbids. */
#include "escape.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: tcp_connect PORT");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) blocked("socket-inet", errno);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) blocked("connect", errno);
    if (write(fd, "hello", 5) != 5) fail("write: %s", strerror(errno));
    escaped("connected to 127.0.0.1:%s", argv[1]);
}
