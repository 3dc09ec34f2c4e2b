/* tracevault query's filter options (--method, --status, --path, ...): each parses its
 * argument into a QueryFilter (PROTOCOL.md "Filters") held in struct tv_filter_args, so a
 * bad value is a usage error naming the item before any server is asked. */
#ifndef TV_CLI_FILTER_ARGS_H
#define TV_CLI_FILTER_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

/* The filter and the storage its pointers point into; zero it before parsing. */
struct tv_filter_args {
	Tracevault__V1__QueryFilter m;
	bool used;  /* some option was given */
	char *methods[TV_FILTER_MAX_ENTRIES];
	Tracevault__V1__Range status[TV_FILTER_MAX_ENTRIES];
	Tracevault__V1__Range *status_p[TV_FILTER_MAX_ENTRIES];
	Tracevault__V1__StringMatch paths[TV_FILTER_MAX_ENTRIES], hosts[TV_FILTER_MAX_ENTRIES],
		comms[TV_FILTER_MAX_ENTRIES];
	Tracevault__V1__StringMatch *paths_p[TV_FILTER_MAX_ENTRIES],
		*hosts_p[TV_FILTER_MAX_ENTRIES], *comms_p[TV_FILTER_MAX_ENTRIES];
	uint32_t pids[TV_FILTER_MAX_ENTRIES];
	char *remotes[TV_FILTER_MAX_ENTRIES];
	char *trace_ids[TV_FILTER_MAX_ENTRIES];
	Tracevault__V1__Range latency;
	bool min_latency, max_latency;
	unsigned roles; /* --role values given: bit 1 << ROLE_SERVER, 1 << ROLE_CLIENT */
	int path_with_query; /* --path-with-query (a TV_CLI_ARG_SET field) */
	unsigned kinds; /* --kind values given: bit 1 << RECORD_KIND_EXCHANGE, 1 << ..._SPAN */
	char *services[TV_FILTER_MAX_ENTRIES];
};

/* The filter options' table entries (struct tv_cli_opt, cli/cli.h) for a command whose
 * options struct type holds a struct tv_filter_args at field; and their --help lines. */
/* --pid of query/summary: a record's pid is a uint32 (TraceRecord.pid), and put may store
 * any of them, 0 included, so the filter takes the whole range (capture's --pid, of live
 * processes, is 1..INT_MAX: cli.h). */
#define TV_FILTER_PID_MAX UINT32_MAX

#define TV_FILTER_CLI_OPTIONS(type, field)                                                     \
	{"method", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL,                    \
	 tv_filter_arg_method},                                                                 \
	{"status", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL,                    \
	 tv_filter_arg_status},                                                                 \
	{"path", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL, tv_filter_arg_path},  \
	{"path-with-query", 0, TV_CLI_ARG_SET, offsetof(type, field.path_with_query), NULL,    \
	 NULL, NULL},                                                                           \
	{"host", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL, tv_filter_arg_host},  \
	{"role", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL, tv_filter_arg_role},  \
	{"pid", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL, tv_filter_arg_pid},    \
	{"comm", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL, tv_filter_arg_comm},  \
	{"remote", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL,                    \
	 tv_filter_arg_remote},                                                                 \
	{"trace-id", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL,                  \
	 tv_filter_arg_trace_id},                                                               \
	{"min-latency", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL,               \
	 tv_filter_arg_min_latency},                                                            \
	{"max-latency", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL,               \
	 tv_filter_arg_max_latency},                                                            \
	{"flags", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL, tv_filter_arg_flags}, \
	{"kind", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL, tv_filter_arg_kind},  \
	{"service", 0, TV_CLI_ARG_CUSTOM, offsetof(type, field), NULL, NULL,                   \
	 tv_filter_arg_service}

#define TV_FILTER_CLI_HELP                                                                     \
	"      --method M             GET, POST, ... (exact, case-sensitive)\n"                \
	"      --status S             5xx, 404, 500-599 (100 to 999), none (no response)\n"     \
	"      --path P               the path before its ?query; a glob when P holds *, ? or [\n" \
	"                             (fnmatch: * also crosses /, [*] is a literal *); taken\n" \
	"                             whole, ',' included: repeat --path for several\n"        \
	"      --path-with-query      --path matches the whole path, query included\n"         \
	"      --host H               host, case and port ignored; a glob as --path\n"         \
	"      --role R               server or client (both: not a record without one)\n"     \
	"      --pid N                process id, 0 to 4294967295 (a record's uint32 pid)\n"    \
	"      --comm C               process name; a glob as --path\n"                        \
	"      --remote A             peer address or CIDR: 10.0.0.0/8, ::1, 2001:db8::/32\n"  \
	"      --trace-id X           32 hex digits of the W3C traceparent\n"                  \
	"      --min-latency D        at least D: N[.N] with ns, us, ms, s, m or h (250ms)\n"  \
	"      --max-latency D        at most D\n"                                             \
	"      --flags F              no_response, partial, lost, cut, unseen: any of them;\n" \
	"                             all:LIST: all of them; clean: none\n"                   \
	"      --kind K               span (received over OTLP) or exchange (captured, put)\n" \
	"      --service S            spans of this service.name (exact; exchanges have none:\n" \
	"                             with --kind exchange a usage error; use --comm)\n"

/* tv_cli_opt CUSTOM parsers; field is the struct tv_filter_args. 0 or -EINVAL with a reason
 * in why. Values are not copied: arg must outlive the filter (argv does). Lists take a,b or
 * a repeated option, except --path (RFC 3986 allows ',' in a path): repeat it for several. */
int tv_filter_arg_method(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_status(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_path(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_host(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_comm(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_role(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_pid(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_remote(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_trace_id(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_min_latency(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_max_latency(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_flags(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_kind(const char *arg, void *field, char *why, size_t whylen);
int tv_filter_arg_service(const char *arg, void *field, char *why, size_t whylen);

/* Parse a latency: N[.N] followed by ns, us, µs, ms, s, m or h (the unit is required).
 * Returns 0 with *ns, or -EINVAL (also on overflow) with a reason in why. */
int tv_parse_latency_ns(const char *s, uint64_t *ns, char *why, size_t whylen);

/* After parsing: the filter to send (NULL when no option was given), or -EINVAL with a
 * reason in why (--min-latency above --max-latency). */
int tv_filter_args_finish(struct tv_filter_args *f, const Tracevault__V1__QueryFilter **out,
			  char *why, size_t whylen);

#endif
