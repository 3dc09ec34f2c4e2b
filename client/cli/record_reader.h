/* The JSON Lines reader of `tracevault put`: the language of tv_record_json_parse
 * (record_json.h), read at put's speed. A yajl event parser bound to the record's schema reads
 * the lines it can prove the reference reads alike; every other line, good or bad, goes to the
 * reference itself, so put accepts and refuses exactly the lines it always did, with the same
 * messages. */
#ifndef TV_RECORD_READER_H
#define TV_RECORD_READER_H

#include <stddef.h>
#include <stdint.h>

#include "tracevault.pb-c.h"

struct tv_record_reader;

/* A reader with no line read yet; NULL when out of memory. Freed with tv_record_reader_free
 * (safe on NULL). One reader serves one thread. */
struct tv_record_reader *tv_record_reader_new(void);
void tv_record_reader_free(struct tv_record_reader *rd);

/* Parse one line (len bytes, no NUL needed) exactly as tv_record_json_parse does: the same
 * lines are accepted with the same record, the same lines refused with the same one-line reason
 * in err. On success *rec points at the record, whose strings and arrays live in the reader:
 * valid until the next call on rd or tv_record_reader_free. Returns 0, -EINVAL (a bad line,
 * reason in err) or -ENOMEM ("out of memory" in err). */
int tv_record_reader_parse(struct tv_record_reader *rd, const char *line, size_t len,
			   const Tracevault__V1__TraceRecord **rec, char *err, size_t errlen);

/* Lines the reader handed to the reference parser (tv_record_json_parse) since it was created:
 * the bad ones and the rare good ones outside the fast path (see record_reader.c). */
uint64_t tv_record_reader_fallbacks(const struct tv_record_reader *rd);

/* Test only: the fast path alone. 1 with *rec set (as tv_record_reader_parse) when it read the
 * line; 0 when it declined it (the line then needs the reference); -ENOMEM. */
int tv_record_reader_parse_fast(struct tv_record_reader *rd, const char *line, size_t len,
				const Tracevault__V1__TraceRecord **rec);

#endif
