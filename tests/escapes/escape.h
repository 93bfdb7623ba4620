/* The attack programs' shared reporting. Each program tries one thing the sandbox
 * must stop and says what happened on stdout, one line, then exits:
 *
 *   ESCAPED <detail>         exit 0: the attack worked
 *   BLOCKED <step> <ERRNO>   exit 1: the named call failed with that errno
 *   ERROR <detail>           exit 2: something unrelated to the sandbox went wrong
 *
 * tests/tests/escapes.rs runs each program without the sandbox (it must print
 * ESCAPED) and under `capsule run` (it must print the expected BLOCKED line, or be
 * killed by a signal). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report(int code, const char *word, const char *fmt, va_list ap) {
    printf("%s ", word);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    exit(code);
}

__attribute__((noreturn, unused, format(printf, 1, 2))) static void escaped(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(0, "ESCAPED", fmt, ap);
    va_end(ap);
    exit(0);
}

/* `step` failed with errno `err`. */
__attribute__((noreturn, unused)) static void blocked(const char *step, int err) {
    const char *name = strerrorname_np(err);
    printf("BLOCKED %s %s\n", step, name ? name : "unknown-errno");
    fflush(stdout);
    exit(1);
}

__attribute__((noreturn, unused, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(2, "ERROR", fmt, ap);
    va_end(ap);
    exit(2);
}

/* The program's single argument, or `fallback`. */
__attribute__((unused)) static const char *arg_or(int argc, char **argv, int i, const char *fallback) {
    return argc > i ? argv[i] : fallback;
}
