/* A system call through the i386 ABI (int $0x80) from a 64-bit program: seccomp
 * sees AUDIT_ARCH_I386 and i386 numbers, which a filter written for x86_64 numbers
 * would misread. The default policy kills the process (SIGSYS, exit 159). */
#include "escape.h"
#include <unistd.h>

int main(void) {
    long ret;
    /* i386 getpid is 20. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    if (ret < 0) blocked("int80-getpid", (int)-ret);
    if (ret != getpid()) fail("int 0x80 getpid returned %ld, not %d", ret, getpid());
    escaped("i386 getpid through int 0x80 returned %ld", ret);
}
