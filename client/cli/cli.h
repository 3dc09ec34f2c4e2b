/* tracevault CLI helpers the commands share: one-line error reports with their exit codes, and
 * the table-driven option parser (after curl's tool_getparam): each command describes its
 * options in a table of struct tv_cli_opt (name, kind of argument, bound, where to store it)
 * and tv_cli_parse does the rest, so every command parses, bounds and words errors alike. */
#ifndef TV_CLI_H
#define TV_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"
#include "proto/block.h"
#include "proto/wire.h"
#include "write/chunker.h"
#include "write/grpc_writer.h"

#define TV_CLI_EXIT_USAGE 2
/* query: every record printed is right, but a server skipped damaged blocks (a warning line
 * names each), so records of theirs are missing */
#define TV_CLI_EXIT_INCOMPLETE 3

/* The blocks the servers skipped during one query or summary, by kind of reason: the closing
 * line says which, since a block removed while the query ran is not a damaged one. */
struct tv_cli_skips {
	uint64_t damaged;    /* failed its checks (BLOCK.md): checksum, decode, catalog mismatch */
	uint64_t unreadable; /* its file missing, not a regular file, or failing to open */
	uint64_t gone;       /* deleted or quarantined after the query began (retention, Delete) */
};

/* Count one SkippedBlock by its reason (server/query.c words: "block file gone: ..." is gone,
 * "block file ..." and "cannot open the block file ..." unreadable, anything else damaged). */
void tv_cli_skip_add(struct tv_cli_skips *s, const char *reason);

/* Every skipped block counted. */
uint64_t tv_cli_skip_total(const struct tv_cli_skips *s);

/* Write the closing line "tracevault: CMD incomplete: N block(s) skipped (KINDS; warnings
 * above)TAIL" on stderr, KINDS being "1 damaged, 2 gone: removed while the query ran". */
void tv_cli_skip_summary(const char *cmd, const struct tv_cli_skips *s, const char *tail);
#define TV_CLI_ERR_LEN 1024
/* tv_cli_parse's "go on": every option was stored, run the command */
#define TV_CLI_PARSED (-1)

/* The kind of a table option's argument, which decides how it is parsed and what type the
 * field at its offset has. Numbers are digits only: no sign, space, base prefix or exponent. */
enum tv_cli_arg {
	TV_CLI_ARG_SET,         /* no argument; int field = 1 */
	TV_CLI_ARG_CLEAR,       /* no argument; int field = 0 */
	TV_CLI_ARG_STRING,      /* const char *field = the argument; limit bounds its length */
	TV_CLI_ARG_INT,         /* int field: decimal digits, within limit (at most INT_MAX) */
	TV_CLI_ARG_U64,         /* uint64_t field: decimal digits, within limit */
	TV_CLI_ARG_SIZE,        /* size_t field: common/size.h syntax (K, M, G), within limit */
	TV_CLI_ARG_SIZE32,      /* uint32_t field: as SIZE */
	TV_CLI_ARG_DURATION_MS, /* int field, ms: N[.N] followed by ms, s, m, h or d, within
				 * limit (at most INT_MAX) */
	TV_CLI_ARG_SECONDS,     /* uint64_t field, ms: as DURATION_MS, or a bare N[.N] in
				 * seconds (--duration 3, --duration 0.5), within limit */
	TV_CLI_ARG_CUSTOM,      /* parse(arg, field, why, whylen) */
};

struct tv_cli_opt {
	const char *name;             /* long name without "--" */
	char short_name;              /* 0: long only */
	enum tv_cli_arg arg;
	size_t offset;                /* of the field in the command's options struct */
	const struct tv_limit *limit; /* the owning module's bound, said after a bad value;
				       * NULL: none (CUSTOM, SET, CLEAR, a free string) */
	const char *hint;             /* said after a bad value, e.g. "jsonl or table" */
	/* CUSTOM: 0, or -EINVAL; a reason written into why replaces the usage line's wording */
	int (*parse)(const char *arg, void *field, char *why, size_t whylen);
};

/* Parse argv (argv[0]: the command name) against table (ended by an entry with name NULL; -h
 * and --help are added and print usage, its NULL-ended parts in order, on stdout), storing
 * into the struct at opts. Returns
 * TV_CLI_PARSED with optind at the first operand, or the exit code for the command to return:
 * EXIT_SUCCESS after --help, TV_CLI_EXIT_USAGE after one line "tracevault: invalid --NAME:
 * 'ARG' (BOUND, HINT)" (or an unknown option, a missing or unwanted value, in
 * common/usage.h's words) on stderr. */
int tv_cli_parse(int argc, char **argv, const struct tv_cli_opt *table, const char *const *usage,
		 void *opts);

/* "tracevault: <reason>" on stderr; they return the exit code for main to return
 * (TV_CLI_EXIT_USAGE or EXIT_FAILURE). */
int tv_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int tv_cli_runtime_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Every command's server list, one rule (common/addr.h's, the one the writer and the query
 * client apply). *servers is --server's value, or NULL when not given: then it becomes the
 * value of TV_SERVER_ENV when set and non-empty, else TV_DEFAULT_SERVER (tracevaultd's
 * default listen address). Returns 0, or the usage exit code after "invalid --server: 'S'
 * (...)" (or "invalid TRACEVAULT_SERVER: ...") for an empty list or entry, an entry that is
 * neither HOST:PORT (port 1 to 65535, IPv6 in brackets) nor a gRPC URI (dns:, ipv4:, ipv6:,
 * unix:, unix-abstract:), an http(s):// URL, or an entry listed twice. */
int tv_cli_check_servers(const char **servers);

/* The window of query and summary: --from (required) and --to as tv_parse_time reads them
 * against now_ns, from <= to (equal: an empty window). Returns 0 with *from_ns and *to_ns set,
 * or the usage exit code after "CMD: missing --from", "invalid --from: 'T': why" (or --to)
 * or "--from (F) is after --to (T)". A bare integer below 10^12 other than 0 (ns before
 * 1970-01-01T00:16:40Z: likely seconds typed by mistake) is kept as ns but warned about on
 * stderr, one line each. */
int tv_cli_time_window(const char *cmd, const char *from, const char *to, uint64_t now_ns,
		       uint64_t *from_ns, uint64_t *to_ns);

/* True when s is a plain decimal, D[.D] (digits, at most one '.', a digit on each side): the
 * syntax of ratios and fractional durations, without strtod's sign, spaces, exponents, hex,
 * inf and nan. */
bool tv_cli_plain_decimal(const char *s);

/* The usage error (exit 2) for a chunk that does not fit the message size (both as chosen or
 * defaulted: 0 means the owner's default), stating the largest chunk that fits, or 0.
 * capture and put share it. */
int tv_cli_check_chunk_fits(size_t chunk_bytes, size_t max_message_bytes);

/* Table entries every writing command shares (capture, put): the chunker's, the writer's and
 * proto's limits. type is the options struct, m the path to its write options ("pipeline." or
 * nothing). */
#define TV_CLI_MESSAGE_OPTION(type, field)                                                     \
	{"max-message-bytes", 0, TV_CLI_ARG_SIZE, offsetof(type, field),                       \
	 &tv_wire_message_bytes_limit, NULL, NULL}
/* The least --max-message-bytes of the reading commands (query, summary). tracevaultd ends a
 * QueryResponse once it holds TV_CLI_SERVER_BATCH_BYTES of records, so one holds up to that
 * plus the record that crossed it (at most TV_BLOCK_MAX_RECORD_BYTES), plus skipped-block
 * entries and tags: below the sum every ordinary query failed mid-way RESOURCE_EXHAUSTED.
 * Twice the sum, 4M, leaves room for the entries. QueryRequest has no field that bounds a
 * batch, so the client adapts to the server, not the other way. */
#define TV_CLI_SERVER_BATCH_BYTES (1u << 20) /* server/query.h TV_QUERY_BATCH_BYTES; test_limits
					      * checks the two agree */
#define TV_CLI_READ_MIN_MESSAGE_BYTES (2 * (TV_CLI_SERVER_BATCH_BYTES + TV_BLOCK_MAX_RECORD_BYTES))
/* TV_CLI_READ_MIN_MESSAGE_BYTES to TV_WIRE_MAX_MESSAGE_BYTES */
extern const struct tv_limit tv_cli_read_message_bytes_limit;
#define TV_CLI_READ_MESSAGE_OPTION(type, field)                                                \
	{"max-message-bytes", 0, TV_CLI_ARG_SIZE, offsetof(type, field),                       \
	 &tv_cli_read_message_bytes_limit,                                                      \
	 "a query batch holds up to 1M of records plus one record of up to 1M", NULL}

#define TV_CLI_WRITER_OPTIONS(type, m)                                                         \
	{"chunk-bytes", 0, TV_CLI_ARG_SIZE, offsetof(type, m chunk_bytes), &tv_chunk_bytes_limit, \
	 NULL, NULL},                                                                           \
	{"window-bytes", 0, TV_CLI_ARG_SIZE, offsetof(type, m window_bytes),                     \
	 &tv_writer_window_bytes_limit, NULL, NULL},                                            \
	{"no-zerocopy", 0, TV_CLI_ARG_SET, offsetof(type, m no_zerocopy), NULL, NULL, NULL},     \
	{"test-corrupt-chunk", 0, TV_CLI_ARG_U64, offsetof(type, m test_corrupt_chunk),          \
	 &tv_cli_positive_count_limit, NULL, NULL},                                             \
	TV_CLI_MESSAGE_OPTION(type, m max_message_bytes)

/* The CLI's own bounds, of values no module limits: 1..INT_MAX (a pid), 0..INT_MAX (an fd),
 * 1..65535 (a port), 0..LLONG_MAX and 1..LLONG_MAX (counts). */
extern const struct tv_limit tv_cli_positive_int_limit, tv_cli_fd_limit, tv_cli_port_limit,
	tv_cli_count_limit, tv_cli_positive_count_limit;

#endif
