/* tracevault CLI helpers the commands share: one-line error reports with their exit codes,
 * strict parsers for integer, size and message-size options, and the writer options. */
#ifndef TV_CLI_H
#define TV_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TV_CLI_EXIT_USAGE 2
#define TV_CLI_ERR_LEN 1024
#define TV_CLI_MAX_CACHE_BYTES (1ull << 40)

/* Long-only options handled by tv_cli_writer_option (capture and put) and the message size
 * (all commands). A command numbers its own long-only options from TV_CLI_OPT_CMD_FIRST. */
enum {
	TV_CLI_OPT_MAX_MESSAGE_BYTES = 256,
	TV_CLI_OPT_CHUNK_BYTES,
	TV_CLI_OPT_WINDOW_BYTES,
	TV_CLI_OPT_NO_ZEROCOPY,
	TV_CLI_OPT_TEST_CORRUPT_CHUNK,
	TV_CLI_OPT_CMD_FIRST = 512,
};

/* "tracevault: <reason>" on stderr; they return the exit code for main to return
 * (TV_CLI_EXIT_USAGE or EXIT_FAILURE). */
int tv_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int tv_cli_runtime_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int tv_cli_bad_option(int c, char **argv);

bool tv_cli_parse_ll(const char *s, long long min, long long max, long long *out);
bool tv_cli_parse_message_bytes(const char *s, size_t *out);
bool tv_cli_parse_size(const char *s, unsigned long long min, unsigned long long max,
		       size_t *out);
int tv_cli_writer_option(int c, size_t *chunk_bytes, size_t *window_bytes, int *no_zerocopy,
			 uint64_t *corrupt_chunk);
bool tv_cli_valid_server_list(const char *s);

#endif
