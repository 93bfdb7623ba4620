/* The other end of three escape attacks, for packaging/docker-escapes.sh inside the
 * container (the image has no python or socat, and the Rust suite's listeners and pty
 * live in its test process on the host). It sets up what the attack aims at, runs the
 * attack command as its child, waits for it, and then says whether anything reached
 * the target, as tests/tests/escapes.rs checks on the host:
 *
 *   harness tcp CMD...        listens on 127.0.0.1 (a free port) for tcp_connect;
 *   harness unix PATH CMD...  listens on the UNIX socket PATH (mode 0777) for unix_connect;
 *   harness pty CMD...        gives CMD a pty in raw mode as stdin, for tty_inject.
 *
 * Each "{}" argument in CMD is replaced by the port or the path. After the child
 * exits, the harness prints one line (never ESCAPED/BLOCKED/ERROR, which are the
 * attack's own words):
 *
 *   HARNESS accepted <bytes the peer sent>   or   HARNESS no connection
 *   HARNESS pending-input <bytes in the terminal's input queue>
 *
 * and exits with the child's status (128 + the signal when it was killed); 70 when
 * the harness itself failed. The accept after the child's exit needs no timing: a
 * connect() that returned has put the connection in the listen queue already. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define HARNESS_FAILED 70

static void die(const char *what) {
    fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
    exit(HARNESS_FAILED);
}

/* Runs argv (with "{}" replaced by `fill`), stdin from `stdin_fd` when >= 0; returns
 * its exit status, 128 + signal when killed. */
static int run(char **argv, const char *fill, int stdin_fd) {
    for (char **arg = argv; *arg; arg++) {
        if (fill && strcmp(*arg, "{}") == 0) *arg = (char *)fill;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        if (stdin_fd >= 0 && dup2(stdin_fd, 0) < 0) die("dup2");
        execvp(argv[0], argv);
        die(argv[0]);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) die("waitpid");
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* One pending connection on the non-blocking `listener`, if any: what the peer sent. */
static void report_connection(int listener) {
    int conn = accept(listener, NULL, NULL);
    if (conn < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            printf("HARNESS no connection\n");
            return;
        }
        die("accept");
    }
    int flags = fcntl(conn, F_GETFL);
    if (flags < 0 || fcntl(conn, F_SETFL, flags & ~O_NONBLOCK) < 0) die("fcntl");
    char buf[256];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(conn, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)n;
    buf[got] = 0;
    printf("HARNESS accepted %s\n", buf);
    close(conn);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: harness tcp CMD... | harness unix PATH CMD... | harness pty CMD...\n");
        return HARNESS_FAILED;
    }
    const char *mode = argv[1];
    int code;
    if (strcmp(mode, "tcp") == 0) {
        int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (listener < 0) die("socket");
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof addr;
        if (bind(listener, (struct sockaddr *)&addr, len) < 0 || listen(listener, 8) < 0) die("bind/listen");
        if (getsockname(listener, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
        char port[16];
        snprintf(port, sizeof port, "%u", ntohs(addr.sin_port));
        code = run(argv + 2, port, -1);
        report_connection(listener);
    } else if (strcmp(mode, "unix") == 0 && argc >= 4) {
        const char *path = argv[2];
        int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (listener < 0) die("socket");
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof addr.sun_path) {
            errno = ENAMETOOLONG;
            die(path);
        }
        strcpy(addr.sun_path, path);
        unlink(path);
        if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 8) < 0) die(path);
        if (chmod(path, 0777) < 0) die("chmod");
        code = run(argv + 3, path, -1);
        report_connection(listener);
        unlink(path);
    } else if (strcmp(mode, "pty") == 0) {
        int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) die("posix_openpt");
        const char *name = ptsname(master);
        if (!name) die("ptsname");
        int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) die(name);
        /* Raw mode: an injected byte would be readable at once, not held for a line. */
        struct termios termios;
        if (tcgetattr(slave, &termios) < 0) die("tcgetattr");
        cfmakeraw(&termios);
        if (tcsetattr(slave, TCSANOW, &termios) < 0) die("tcsetattr");
        code = run(argv + 2, NULL, slave);
        int pending = 0;
        if (ioctl(slave, FIONREAD, &pending) < 0) die("FIONREAD");
        printf("HARNESS pending-input %d\n", pending);
    } else {
        fprintf(stderr, "harness: unknown mode %s\n", mode);
        return HARNESS_FAILED;
    }
    fflush(stdout);
    return code;
}
