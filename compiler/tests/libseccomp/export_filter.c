/*
 * Builds a seccomp filter with libseccomp from a line-based description on stdin
 * and writes it, as raw struct sock_filter[], to the file named by argv[1].
 *
 *   arch x86_64|aarch64         the only architecture in the filter
 *   default 0xRET               SCMP_FLTATR_ACT_DEFAULT (seccomp_init)
 *   badarch 0xRET               SCMP_FLTATR_ACT_BADARCH
 *   optimize 1|2                SCMP_FLTATR_CTL_OPTIMIZE (2: binary tree)
 *   rule 0xRET NAME N [ARG OP DATUM_A DATUM_B]*N
 *                               seccomp_rule_add_array; OP is NE LT LE EQ GE GT
 *                               MASKED_EQ (DATUM_A is the mask)
 *
 * A rule whose NAME libseccomp does not know on the arch is skipped and reported on
 * stdout as "unknown NAME", which is what runc does. Any other failure is fatal.
 */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, const char *detail, int rc)
{
	fprintf(stderr, "export_filter: %s %s: %s\n", what, detail, rc ? strerror(-rc) : "");
	exit(1);
}

static uint64_t number(const char *text)
{
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 0);
	if (errno || *end)
		die("not a number:", text, 0);
	return value;
}

static enum scmp_compare compare_op(const char *name)
{
	static const struct { const char *name; enum scmp_compare op; } ops[] = {
		{"NE", SCMP_CMP_NE}, {"LT", SCMP_CMP_LT}, {"LE", SCMP_CMP_LE}, {"EQ", SCMP_CMP_EQ},
		{"GE", SCMP_CMP_GE}, {"GT", SCMP_CMP_GT}, {"MASKED_EQ", SCMP_CMP_MASKED_EQ},
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (!strcmp(ops[i].name, name))
			return ops[i].op;
	die("unknown comparison", name, 0);
	return 0;
}

static char *next_word(void)
{
	char *word = strtok(NULL, " \t\n");
	if (!word)
		die("line ends early", "", 0);
	return word;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		die("usage:", "export_filter OUT.bpf < SPEC", 0);
	scmp_filter_ctx ctx = NULL;
	uint32_t arch = 0;
	char line[65536];
	while (fgets(line, sizeof(line), stdin)) {
		char *key = strtok(line, " \t\n");
		if (!key)
			continue;
		if (!strcmp(key, "arch")) {
			char *name = next_word();
			arch = seccomp_arch_resolve_name(name);
			if (!arch)
				die("unknown arch", name, 0);
		} else if (!strcmp(key, "default")) {
			if (ctx || !arch)
				die("`default` must come once, after `arch`", "", 0);
			ctx = seccomp_init(number(next_word()));
			if (!ctx)
				die("seccomp_init failed", "", 0);
			if (arch != seccomp_arch_native()) {
				int rc = seccomp_arch_add(ctx, arch);
				if (rc)
					die("seccomp_arch_add", "", rc);
				rc = seccomp_arch_remove(ctx, SCMP_ARCH_NATIVE);
				if (rc)
					die("seccomp_arch_remove", "", rc);
			}
		} else if (!ctx) {
			die("`arch` and `default` must come first, not", key, 0);
		} else if (!strcmp(key, "badarch")) {
			int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, number(next_word()));
			if (rc)
				die("SCMP_FLTATR_ACT_BADARCH", "", rc);
		} else if (!strcmp(key, "optimize")) {
			int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, number(next_word()));
			if (rc)
				die("SCMP_FLTATR_CTL_OPTIMIZE", "", rc);
		} else if (!strcmp(key, "rule")) {
			uint32_t action = number(next_word());
			char *name = next_word();
			unsigned count = number(next_word());
			struct scmp_arg_cmp cmps[6];
			if (count > 6)
				die("more than 6 comparisons for", name, 0);
			for (unsigned i = 0; i < count; i++) {
				cmps[i].arg = number(next_word());
				cmps[i].op = compare_op(next_word());
				cmps[i].datum_a = number(next_word());
				cmps[i].datum_b = number(next_word());
			}
			/* Rules take native numbers, translated by name to the filter's arch. */
			if (seccomp_syscall_resolve_name_arch(arch, name) < 0) {
				printf("unknown %s\n", name);
				continue;
			}
			int rc = seccomp_rule_add_array(ctx, action, seccomp_syscall_resolve_name(name), count, cmps);
			if (rc)
				die("seccomp_rule_add_array", name, rc);
		} else {
			die("unknown line", key, 0);
		}
	}
	if (!ctx)
		die("no `default` line", "", 0);
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open", argv[1], -errno);
	int rc = seccomp_export_bpf(ctx, fd);
	if (rc)
		die("seccomp_export_bpf", "", rc);
	if (close(fd))
		die("close", argv[1], -errno);
	seccomp_release(ctx);
	return 0;
}
