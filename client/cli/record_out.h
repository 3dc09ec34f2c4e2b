/* The output formats of `tracevault query` (jsonl, table, csv, otlp-json): each record is
 * rendered from its wire bytes (proto/record_wire.h: no unpack, no allocation per record) into
 * one buffer (cli/out_buf.h), and the buffer goes to the descriptor in batches, one write(2)
 * per TV_RECORD_OUT_FLUSH_BYTES instead of a stdio call per field and character. */
#ifndef TV_RECORD_OUT_H
#define TV_RECORD_OUT_H

#include "cli/out_buf.h"
#include "proto/record_wire.h"

enum tv_out_format {
	TV_OUT_JSONL,     /* one JSON object per line (what put reads back) */
	TV_OUT_TABLE,     /* aligned columns for people */
	TV_OUT_CSV,       /* RFC 4180 with a header row */
	TV_OUT_OTLP_JSON, /* OTLP JSON (record_otlp.h) */
};

/* Rendered bytes are handed to the stream once this many are buffered, and at the end: the
 * output's latency bound in bytes (a query's records arrive in batches anyway). */
#define TV_RECORD_OUT_FLUSH_BYTES (256u * 1024)

/* A pipe as the output is grown to this many bytes (F_SETPIPE_SZ; never shrunk, and left as it
 * is when the kernel refuses, e.g. past /proc/sys/fs/pipe-max-size or the user's pipe pages):
 * Linux's default 64 KiB pipe takes a quarter of a flush, so writer and reader each woke four
 * times a flush; a 1 MiB one takes four flushes. */
#define TV_RECORD_OUT_PIPE_BYTES (1024 * 1024)

/* Append r as one JSON object and a newline: fields in proto order, integers as numbers;
 * req_headers / resp_headers (arrays of {"name", "value"}) only when r has any; the body
 * fields of capture --body-bytes only when not empty: the content type and encoding strings,
 * and each body as req_body / resp_body when it is valid UTF-8 without NUL (a JSON string of
 * those bytes), else as req_body_base64 / resp_body_base64 (the key is the encoding marker).
 * A span record (BLOCK.md "Record kinds") ends with a "span" object of its Span fields
 * (cli/record_json.h tv_span_fields, "attributes" after the first TV_SPAN_N_COLUMNS). Every
 * line of a record tv_record_check accepts reads back with tv_record_json_parse
 * (cli/record_json.h) to the same record, so put of query's output stores what was read, and
 * the line it then writes is the same (strings that were not valid UTF-8 excepted: they come
 * out with U+FFFD, escaped the first time, as the character itself the second). */
void tv_record_jsonl(struct tv_out_buf *b, const struct tv_record_wire *r);
/* A double as JSON (shortest round-trip digits, an integral value without a fraction, -0 as
 * "-0.0" so that it reads back as a real; "NaN", "Infinity", "-Infinity" as strings, as
 * protobuf's JSON mapping writes them). */
void tv_out_json_double(struct tv_out_buf *b, double d);

/* Table: a header line, then one aligned row per record (UTC time with ms, role, method,
 * host, path, HTTP version, status, latency ms, pid, comm, remote). Control characters and
 * bytes that are not UTF-8 in captured strings are shown as '?' (tv_term_char) so a hostile
 * path cannot drive the terminal; printable non-ASCII UTF-8 is shown as it is. A span record
 * shows role "span", its kind, service and name in the method, host and path columns and its
 * OTLP status code as the status. */
void tv_record_table_header(struct tv_out_buf *b);
void tv_record_table_row(struct tv_out_buf *b, const struct tv_record_wire *r);

/* CSV (RFC 4180): a header row naming jsonl's scalar fields in proto order (ts_ns .. 
 * http_version), then one row per record with the same values as jsonl: numbers in decimal,
 * strings as UTF-8 (bytes that are not valid UTF-8 as U+FFFD, like jsonl), a field holding
 * ',', '"', CR or LF quoted with '"' doubled; lines end CRLF. Headers and bodies are in
 * jsonl only. After those columns, a span record's span_parent_span_id, span_name,
 * span_kind, span_status_code, span_status_message, span_service (all empty in an
 * exchange's row). */
void tv_record_csv_header(struct tv_out_buf *b);
void tv_record_csv_row(struct tv_out_buf *b, const struct tv_record_wire *r);

/* A query's output stream in one format. */
struct tv_record_out;

/* Output to the descriptor fd (not owned; written with write(2) only, so nothing may be
 * pending in a stdio buffer of it) in format fmt; a pipe at fd is grown to
 * TV_RECORD_OUT_PIPE_BYTES. 0 or -ENOMEM. */
int tv_record_out_new(int fd, enum tv_out_format fmt, struct tv_record_out **out);
/* Add one record (r is read during the call only; one tv_record_wire_parse accepted). 0,
 * -ENOMEM, or -EIO (write(2) failed: errno says why). */
int tv_record_out_add(struct tv_record_out *o, const struct tv_record_wire *r);
/* End the output: what the format still owes (the table or csv header when no record came,
 * otlp-json's last batch), everything written. 0, -ENOMEM or -EIO. */
int tv_record_out_finish(struct tv_record_out *o);
/* Write what is rendered, without ending the output (otlp-json's open batch stays open):
 * called while the query waits on its servers, so records stream as they come while a batch
 * of them still shares one write. 0, -ENOMEM or -EIO. */
int tv_record_out_flush(struct tv_record_out *o);
void tv_record_out_free(struct tv_record_out *o);

#endif
