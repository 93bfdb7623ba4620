/* A bounded fork bomb: fork children that wait on a pipe until fork fails or
 * argv[1] children exist, then report, and let every child go.
 *
 *   ESCAPED forked N         (exit 0) the cap was reached without a failure
 *   BLOCKED fork-after-N EAGAIN  (exit 1) fork failed after N children */
#include "escape.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long cap = atol(arg_or(argc, argv, 1, "2048"));
    int gate[2];
    if (pipe(gate) != 0) fail("pipe: %s", strerror(errno));
    long children = 0;
    int err = 0;
    while (children < cap) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            char c;
            close(gate[1]);
            /* Returns 0 (end of file) when the parent closes its end or dies. */
            while (read(gate[0], &c, 1) < 0 && errno == EINTR) {}
            _exit(0);
        }
        children++;
    }
    close(gate[1]);
    while (wait(NULL) > 0) {}
    if (err) {
        char step[64];
        snprintf(step, sizeof step, "fork-after-%ld", children);
        blocked(step, err);
    }
    escaped("forked %ld", children);
}
