/* open_by_handle_at: opens a file by its file handle, bypassing path lookup, so
 * path-based rules (Landlock) never see it; the "shocker" container escape. It needs
 * CAP_DAC_READ_SEARCH, so the unsandboxed proof needs root. argv[1]: a file to get
 * the handle of. */
#include "escape.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: open_by_handle FILE");
    struct {
        struct file_handle handle;
        unsigned char bytes[MAX_HANDLE_SZ];
    } h;
    memset(&h, 0, sizeof h);
    h.handle.handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    if (name_to_handle_at(AT_FDCWD, argv[1], &h.handle, &mount_id, 0) != 0) {
        /* Try the dangerous call anyway with a made-up handle: a kernel that runs it
         * answers ESTALE or EINVAL; a filter that stops it answers its own errno. */
        h.handle.handle_bytes = 8;
        h.handle.handle_type = 1;
    }
    int fd = open_by_handle_at(AT_FDCWD, &h.handle, O_RDONLY);
    if (fd < 0) blocked("open_by_handle_at", errno);
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    escaped("opened %s by handle and read %zd bytes", argv[1], n);
}
