/* SIGKILL to the parent: under capsule the launcher, which must survive to report
 * the command's status (and, later, to finish the audit log). */
#include "escape.h"
#include <signal.h>
#include <unistd.h>

int main(void) {
    pid_t parent = getppid();
    if (kill(parent, SIGKILL) != 0) blocked("kill-parent", errno);
    escaped("sent SIGKILL to the parent %d", parent);
}
