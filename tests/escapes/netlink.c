/* socket(AF_NETLINK): talk to the kernel's routing, netfilter, audit... interfaces.
 * argv[1]: "plain" (libc socket()) or "high-bits" (a raw syscall with garbage in the
 * high half of the domain register: the kernel reads an int, so 0xffffffff00000010
 * is AF_NETLINK to it, and a filter comparing all 64 bits would miss it). */
#include "escape.h"
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = arg_or(argc, argv, 1, "plain");
    long fd;
    if (strcmp(mode, "high-bits") == 0) {
        fd = syscall(SYS_socket, 0xffffffff00000000UL | AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    } else {
        fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    }
    if (fd < 0) blocked("socket-netlink", errno);
    escaped("AF_NETLINK socket fd %ld (%s)", fd, mode);
}
