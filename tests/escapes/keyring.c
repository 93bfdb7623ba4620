/* The kernel keyrings (add_key, keyctl): shared kernel state, not namespaced, a
 * frequent source of kernel bugs. */
#include "escape.h"
#include <linux/keyctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    long key = syscall(SYS_add_key, "user", "capsule-escape-test", "x", 1, KEY_SPEC_PROCESS_KEYRING);
    if (key < 0) blocked("add_key", errno);
    long found = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 0);
    if (found < 0) blocked("keyctl", errno);
    escaped("added key %ld to process keyring %ld", key, found);
}
