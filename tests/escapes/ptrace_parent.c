/* Attach to the parent with ptrace: under capsule the parent is the launcher,
 * which runs outside the sandbox. Attaching stops the parent, so the program detaches
 * at once. */
#include "escape.h"
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t parent = getppid();
    if (ptrace(PTRACE_ATTACH, parent, 0, 0) != 0) blocked("ptrace-attach", errno);
    int status;
    waitpid(parent, &status, __WALL);
    ptrace(PTRACE_DETACH, parent, 0, 0);
    escaped("attached to the parent %d with ptrace", parent);
}
