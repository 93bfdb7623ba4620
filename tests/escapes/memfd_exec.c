/* Exec a program that is on no executable path: copy /bin/echo into a memfd and
 * exec the copy, which prints the ESCAPED line itself.
 * argv[1]: "execveat" (execveat(fd, "", AT_EMPTY_PATH)) or "proc-fd"
 * (execve("/proc/self/fd/N")).
 *
 * When memfd_create is refused, the program goes on with a copy in the current
 * directory, so the exec step is still tried: the sandbox must stop it too. */
#include "escape.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static void copy_echo(int fd) {
    int src = open("/bin/echo", O_RDONLY);
    if (src < 0) fail("open /bin/echo: %s", strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0) {
        if (write(fd, buf, (size_t)n) != n) fail("write the copy: %s", strerror(errno));
    }
    close(src);
}

int main(int argc, char **argv) {
    const char *mode = arg_or(argc, argv, 1, "execveat");
    /* Not close-on-exec: for proc-fd the kernel must still find the file through
     * /proc/self/fd while the exec runs. */
    int fd = memfd_create("capsule-escape", 0);
    if (fd >= 0) {
        copy_echo(fd);
    } else {
        printf("NOTE memfd_create %s: using a copy in the current directory\n", strerrorname_np(errno));
        const char *copy = "capsule-escape-echo";
        int out = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0755);
        if (out < 0) fail("create %s: %s", copy, strerror(errno));
        copy_echo(out);
        close(out);
        /* Read-only: a file open for writing cannot be executed (ETXTBSY). */
        fd = open(copy, O_RDONLY);
        if (fd < 0) fail("open %s: %s", copy, strerror(errno));
    }
    fflush(stdout);
    char detail[64];
    snprintf(detail, sizeof detail, "exec of a copy of /bin/echo (%s)", mode);
    char *args[] = {"echo", "ESCAPED", detail, NULL};
    if (strcmp(mode, "proc-fd") == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        execve(path, args, environ);
        blocked("execve-proc-fd", errno);
    }
    syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
    blocked("execveat", errno);
}
