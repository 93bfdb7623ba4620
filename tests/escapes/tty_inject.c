/* Terminal injection: TIOCSTI pushes bytes into a terminal's input queue, as if
 * typed (the classic sandbox escape through the caller's shell). The program opens
 * its own pty pair (or, when it may not, uses the terminal on its stdin), makes the
 * terminal its controlling one (needed without CAP_SYS_ADMIN) and injects into it.
 *
 * argv[1]: "sti" (inject "x\n" and read it back from the terminal) or "linux"
 * (TIOCLINUX: on a pty the call reaches the tty layer, which answers ENOTTY; on a
 * virtual console it selects and pastes text). */
#include "escape.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = arg_or(argc, argv, 1, "sti");
    int tty;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master >= 0) {
        if (grantpt(master) != 0 || unlockpt(master) != 0) fail("grantpt/unlockpt: %s", strerror(errno));
        const char *name = ptsname(master);
        if (!name) fail("ptsname: %s", strerror(errno));
        tty = open(name, O_RDWR | O_NOCTTY);
        if (tty < 0) fail("open %s: %s", name, strerror(errno));
    } else if (isatty(0)) {
        /* The default policy does not let the command write /dev/ptmx; a terminal it
         * was given (the test passes one as stdin) is the next best target. */
        printf("NOTE posix_openpt %s: using stdin, a terminal\n", strerrorname_np(errno));
        tty = 0;
    } else {
        blocked("posix_openpt", errno);
    }
    /* Without CAP_SYS_ADMIN, TIOCSTI needs the terminal to be the caller's
     * controlling terminal. Under capsule the program already leads its own session
     * (setsid fails with EPERM, which is fine) and has none yet. */
    setsid();
    if (ioctl(tty, TIOCSCTTY, 0) != 0) printf("NOTE TIOCSCTTY %s\n", strerrorname_np(errno));

    if (strcmp(mode, "linux") == 0) {
        char subcode = 0; /* TIOCL_... 0 is not a valid subcode; the filter looks at the request only */
        if (ioctl(tty, TIOCLINUX, &subcode) != 0) {
            if (errno == ENOTTY) escaped("TIOCLINUX reached the tty driver (ENOTTY on a pty)");
            blocked("ioctl-TIOCLINUX", errno);
        }
        escaped("TIOCLINUX succeeded");
    }

    const char *typed = "x\n";
    for (const char *c = typed; *c; c++) {
        if (ioctl(tty, TIOCSTI, c) != 0) blocked("ioctl-TIOCSTI", errno);
    }
    struct pollfd pfd = {.fd = tty, .events = POLLIN};
    if (poll(&pfd, 1, 2000) != 1) fail("the injected input did not arrive");
    char buf[16] = {0};
    ssize_t n = read(tty, buf, sizeof buf - 1);
    if (n < 1 || buf[0] != 'x') fail("read back %zd bytes: %s", n, buf);
    escaped("TIOCSTI injected input that the terminal read back");
}
