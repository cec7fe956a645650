/*
 * tests/tap.h - TAP output for C tests (header-only).
 */
#ifndef PMG_TESTS_TAP_H
#define PMG_TESTS_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int tap__n, tap__failed;

static inline void tap_plan(int n) { printf("1..%d\n", n); fflush(stdout); }

/* The whole program cannot run here; says why and exits 0 (TAP skip). */
static inline void tap_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

static inline int tap_ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;
	printf("%s %d - ", cond ? "ok" : "not ok", ++tap__n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap__failed++;
	return cond;
}

static inline void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tap_diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline int tap_done(void) { return tap__failed ? 1 : 0; }

/* Skip everything when the machine has no usable KVM. */
static inline void tap_require_kvm(void)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		tap_skip_all("/dev/kvm is absent or not accessible");
}

#endif
