/* bpf(2): load programs and maps into the kernel. Unprivileged BPF is disabled on
 * this kernel (kernel.unprivileged_bpf_disabled), so the unsandboxed proof needs root. */
#include "escape.h"
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 1;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd < 0) blocked("bpf-map-create", errno);
    escaped("bpf created a map, fd %ld", fd);
}
