/* Allocation failure injection for unit tests linked with -Wl,--wrap=malloc,calloc,realloc
 * (tests/CMakeLists.txt): once fail_countdown is set to N, the Nth malloc, calloc or realloc
 * of the code under test returns NULL (then injected is 1 and the countdown is off). Include
 * it in exactly one file of a test executable: it defines the __wrap_ functions. */
#ifndef TV_TEST_FAIL_ALLOC_H
#define TV_TEST_FAIL_ALLOC_H

#include <stddef.h>

static unsigned fail_countdown; /* 0: off */
static int injected;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static int fail_now(void)
{
	if (fail_countdown && --fail_countdown == 0) {
		injected = 1;
		return 1;
	}
	return 0;
}

void *__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
	return fail_now() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __real_realloc(p, n);
}

#endif
