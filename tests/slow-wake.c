/*
 * slow-wake.so: an LD_PRELOAD fault injector for tests. It wraps libuv's
 * uv_async_send so that a destination decode thread ("decode*"), right
 * after waking the event loop, sleeps for a few milliseconds before it
 * goes on. The loop then handles that wake-up while the thread has not
 * yet reached its next instruction - the interleaving a slow or busy
 * machine makes now and then (Xen's emulated dom0 made it often), here
 * every time. PMG_SLOW_WAKE_US sets the pause (default 3000). With
 * PMG_SLOW_WAKE_BEFORE set, the thread sleeps before it wakes the loop
 * instead: a decode thread that lags behind a session ending under it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

int uv_async_send(uv_async_t *async)
{
	static int (*real)(uv_async_t *);
	if (!real)
		real = (int (*)(uv_async_t *))dlsym(RTLD_NEXT, "uv_async_send");
	char name[16] = "";
	pthread_getname_np(pthread_self(), name, sizeof(name));
	int slow = !strncmp(name, "decode", 6), before = getenv("PMG_SLOW_WAKE_BEFORE") != NULL;
	const char *e = getenv("PMG_SLOW_WAKE_US");
	long us = e ? atol(e) : 3000;
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	if (slow && before)
		nanosleep(&ts, NULL);
	int rc = real(async);
	if (slow && !before)
		nanosleep(&ts, NULL);
	return rc;
}

/* PMG_SLOW_LOOP_CLOSE_US: a loop's owner lingers that long once the loop
 * is closed, as a process busy tearing down (destroying a VM) would: a
 * thread that still wakes that loop then finds its descriptor gone. */
int uv_loop_close(uv_loop_t *loop)
{
	static int (*real)(uv_loop_t *);
	if (!real)
		real = (int (*)(uv_loop_t *))dlsym(RTLD_NEXT, "uv_loop_close");
	int rc = real(loop);
	const char *e = getenv("PMG_SLOW_LOOP_CLOSE_US");
	if (e) {
		long us = atol(e);
		struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
		nanosleep(&ts, NULL);
	}
	return rc;
}
