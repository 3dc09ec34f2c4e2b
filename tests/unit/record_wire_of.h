/* A TraceRecord built as a protobuf-c struct, as the query client sees it: packed to its wire
 * bytes and read in place (proto/record_wire.h), for the tests of the output formats that
 * write records field by field. */
#ifndef TV_TEST_RECORD_WIRE_OF_H
#define TV_TEST_RECORD_WIRE_OF_H

#include <stdint.h>
#include <stdlib.h>

#include "proto/record_wire.h"
#include "tracevault.pb-c.h"

/* Fill w from r; w points into *bytes, a malloc'd copy of r's wire bytes (free it after w). */
static inline void record_wire_of(const Tracevault__V1__TraceRecord *r, struct tv_record_wire *w,
				  uint8_t **bytes)
{
	size_t n = tracevault__v1__trace_record__get_packed_size(r);

	*bytes = malloc(n ? n : 1);
	assert_non_null(*bytes);
	tracevault__v1__trace_record__pack(r, *bytes);
	assert_int_equal(tv_record_wire_parse(*bytes, n, w), 0);
}

#endif
