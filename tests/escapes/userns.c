/* A new user namespace: full capabilities inside it, and with them the kernel's
 * namespace-only attack surface (mounts, netfilter, ...).
 * argv[1]: "unshare" (unshare(CLONE_NEWUSER)) or "clone" (a raw clone with
 * CLONE_NEWUSER, whose child exits at once). */
#include "escape.h"
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = arg_or(argc, argv, 1, "unshare");
    if (strcmp(mode, "unshare") == 0) {
        if (unshare(CLONE_NEWUSER) != 0) blocked("unshare-newuser", errno);
        escaped("unshare(CLONE_NEWUSER) succeeded");
    }
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), 0, 0, 0, 0);
    if (pid < 0) blocked("clone-newuser", errno);
    if (pid == 0) _exit(0);
    int status;
    waitpid((pid_t)pid, &status, 0);
    escaped("clone(CLONE_NEWUSER) made child %ld", pid);
}
