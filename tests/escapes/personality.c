/* personality(READ_IMPLIES_EXEC): makes every readable mapping executable,
 * undoing W^X for the process and what it execs. */
#include "escape.h"
#include <sys/personality.h>

int main(void) {
    if (personality(READ_IMPLIES_EXEC) == -1) blocked("personality", errno);
    int now = personality(0xffffffff);
    if (now == -1 || !(now & READ_IMPLIES_EXEC)) fail("personality is %#x after setting READ_IMPLIES_EXEC", now);
    escaped("personality is now %#x (READ_IMPLIES_EXEC)", now);
}
