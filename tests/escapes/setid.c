/* Leave a set-user-ID or set-group-ID file behind: whoever runs it later runs it as
 * its owner (root, when the command ran as root). `setid METHOD DIR [MODE]` makes
 * DIR/setid-METHOD with MODE (octal, default 4755) through one system call, made
 * directly so that libc cannot pick another one:
 *
 *   chmod fchmod fchmodat fchmodat2   create the file with 0755, then set MODE
 *   creat open openat mknod mknodat    create it with MODE
 *   tmpfile                            openat(O_TMPFILE) with MODE, then link it in
 *   openat2                            openat2 with O_CREAT and MODE
 *
 * ESCAPED when the file is left with a set-id bit. */
#include "escape.h"
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

int main(int argc, char **argv) {
    if (argc < 3) fail("usage: setid METHOD DIR [MODE]");
    const char *method = argv[1];
    const char *dir = argv[2];
    mode_t mode = (mode_t)strtoul(arg_or(argc, argv, 3, "4755"), NULL, 8);
    char path[4096];
    snprintf(path, sizeof path, "%s/setid-%s", dir, method);
    unlink(path);
    long r = -1;
    int is = 0;
#define METHOD(name) (strcmp(method, name) == 0 && (is = 1))
    if (METHOD("chmod") || METHOD("fchmod") || METHOD("fchmodat") || METHOD("fchmodat2")) {
        /* An ordinary file with an ordinary mode: the sandbox lets this through. */
        long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL, 0755);
        if (fd < 0) fail("create %s: %s", path, strerror(errno));
        if (METHOD("chmod")) r = syscall(SYS_chmod, path, mode);
        else if (METHOD("fchmod")) r = syscall(SYS_fchmod, fd, mode);
        else if (METHOD("fchmodat")) r = syscall(SYS_fchmodat, AT_FDCWD, path, mode);
        else r = syscall(SYS_fchmodat2, AT_FDCWD, path, mode, 0);
    } else if (METHOD("creat")) {
        r = syscall(SYS_creat, path, mode);
    } else if (METHOD("open")) {
        r = syscall(SYS_open, path, O_WRONLY | O_CREAT | O_EXCL, mode);
    } else if (METHOD("openat")) {
        r = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL, mode);
    } else if (METHOD("mknod")) {
        r = syscall(SYS_mknod, path, S_IFREG | mode, 0);
    } else if (METHOD("mknodat")) {
        r = syscall(SYS_mknodat, AT_FDCWD, path, S_IFREG | mode, 0);
    } else if (METHOD("openat2")) {
        struct open_how how = {.flags = O_WRONLY | O_CREAT | O_EXCL, .mode = mode};
        r = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    } else if (METHOD("tmpfile")) {
        long fd = syscall(SYS_openat, AT_FDCWD, dir, O_TMPFILE | O_WRONLY, mode);
        if (fd < 0) blocked(method, errno);
        /* Give the anonymous file a name, so that it outlives the process. */
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%ld", fd);
        if (linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0)
            fail("linkat %s: %s", path, strerror(errno));
        r = 0;
    }
    if (!is) fail("unknown method %s", method);
    if (r < 0) blocked(method, errno);
    struct stat st;
    if (stat(path, &st) != 0) fail("stat %s: %s", path, strerror(errno));
    if (!(st.st_mode & (S_ISUID | S_ISGID))) fail("%s: the kernel left mode %o without set-id bits", path, st.st_mode);
    escaped("%s made %s with mode %o", method, path, st.st_mode & 07777);
}
