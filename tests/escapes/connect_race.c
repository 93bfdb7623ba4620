/* Races the supervisor's read of a connect() address: a second thread keeps
 * rewriting the address between the proxy's (127.0.0.1:PORT) and another
 * (127.0.0.2:PORT) while the main thread connects, so that the supervisor may read
 * the proxy's address and the kernel then connect to the other one. Escaped if any
 * connection reaches 127.0.0.2; the namespace must refuse every such attempt,
 * whatever the supervisor read. Usage: connect_race PORT ATTEMPTS */
#include "escape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

static union {
    struct sockaddr_in in;
    uint64_t head; /* family, port and address: rewritten in one store */
} target;
static uint64_t proxy_head, other_head;
static volatile int done;

static void *flip(void *unused) {
    (void)unused;
    while (!done) {
        __atomic_store_n(&target.head, proxy_head, __ATOMIC_RELAXED);
        __atomic_store_n(&target.head, other_head, __ATOMIC_RELAXED);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) fail("usage: connect_race PORT ATTEMPTS");
    int port = atoi(argv[1]), attempts = atoi(argv[2]);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    memcpy(&proxy_head, &a, sizeof proxy_head);
    inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
    memcpy(&other_head, &a, sizeof other_head);
    memcpy(&target.in, &a, sizeof a);

    pthread_t flipper;
    if (pthread_create(&flipper, NULL, flip, NULL) != 0) fail("pthread_create");
    int reached_other = 0, reached_proxy = 0, refused = 0, last_errno = 0;
    for (int i = 0; i < attempts; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) fail("socket: %s", strerror(errno));
        if (connect(s, (struct sockaddr *)&target.in, sizeof target.in) == 0) {
            struct sockaddr_in peer;
            socklen_t len = sizeof peer;
            getpeername(s, (struct sockaddr *)&peer, &len);
            if (peer.sin_addr.s_addr == htonl(0x7f000002)) reached_other++;
            else reached_proxy++;
        } else {
            refused++;
            last_errno = errno;
        }
        close(s);
    }
    done = 1;
    pthread_join(flipper, NULL);
    printf("attempts %d: reached 127.0.0.2 %d, the proxy %d, refused %d\n", attempts, reached_other, reached_proxy,
           refused);
    if (reached_other > 0) escaped("%d connections reached 127.0.0.2:%d", reached_other, port);
    blocked("connect", last_errno ? last_errno : EAGAIN);
}
