/* mount(2): a tmpfs over argv[1]. Run unsandboxed only inside a private mount
 * namespace (`unshare -m` as root, `unshare -rm` unprivileged), so the host's mount
 * table never changes. */
#include "escape.h"
#include <sys/mount.h>

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: mount DIR");
    if (mount("capsule-escape", argv[1], "tmpfs", 0, "size=64k") != 0) blocked("mount", errno);
    umount(argv[1]);
    escaped("mounted a tmpfs on %s", argv[1]);
}
