/* tracevault: the client CLI. `capture` streams HTTP exchanges seen by eBPF to tracevaultd,
 * `put` imports JSON Lines as one atomic segment, `query` reads a time range back.
 * This file is the dispatcher; each command lives in its own cmd_*.c file. */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "common/addr.h"

/* malloc policy for block memory (see main): above the largest block, and the cache default. */
#define BLOCK_MMAP_THRESHOLD_BYTES (64 << 20)
#define BLOCK_TRIM_THRESHOLD_BYTES (512 << 20)

static const char main_usage[] =
	"Usage: tracevault <command> [options]\n"
	"\n"
	"Record HTTP exchanges with eBPF and store them in tracevaultd by time.\n"
	"\n"
	"Commands:\n"
	"  capture   trace HTTP/1.x on local sockets and stream records to the server\n"
	"  put       import JSON Lines records as one atomic segment\n"
	"  query     print the records of a time range, ordered by ts_ns\n"
	"  summary   per path, host, status...: count, error rates, latency quantiles\n"
	"  trace     one trace: its spans (OTLP) as a tree, captured exchanges under them\n"
	"\n"
	"Run 'tracevault <command> --help' for the options of a command, 'tracevault --version'\n"
	"for the version. Without --server, commands use $" TV_SERVER_ENV " (an empty one counts\n"
	"as unset), else " TV_DEFAULT_SERVER ".\n"
	"\n"
	"Examples:\n"
	"  tracevault capture --server 127.0.0.1:7070 --port 8080\n"
	"  tracevault put --server 127.0.0.1:7070 records.jsonl\n"
	"  tracevault query --server 127.0.0.1:7070 --from -15m --to now --format table\n"
	"  tracevault summary --server 127.0.0.1:7070 --from -1h --by path --top 20\n";

int main(int argc, char **argv)
{
	const char *cmd;

	/* Sealed blocks (MiBs each) are malloc'd and freed at the cache's pace. By default glibc
	 * serves them with fresh mmaps, so every block's pages are faulted in anew and the kernel's
	 * first copy out of them at send time is slow: measured with bench/run.sh, that made the
	 * zero-copy send cost ~0.3 CPU s/GB more than copying into reused buffers. Reuse the
	 * memory instead (as tracevaultd does); --cache-bytes still bounds how much is held. */
	mallopt(M_MMAP_THRESHOLD, BLOCK_MMAP_THRESHOLD_BYTES);
	mallopt(M_TRIM_THRESHOLD, BLOCK_TRIM_THRESHOLD_BYTES);
	opterr = 0; /* we print exactly one line per usage error ourselves */
	if (argc < 2)
		return tv_cli_usage_error("missing command (capture, put, query, summary or trace; see --help)");
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(main_usage, stdout);
		return EXIT_SUCCESS;
	}
	if (strcmp(cmd, "--version") == 0) {
		if (argc > 2)
			return tv_cli_usage_error("--version takes no arguments");
		puts("tracevault " TV_VERSION);
		return EXIT_SUCCESS;
	}
	/* the subcommand is argv[0] of its own getopt run */
	if (strcmp(cmd, "capture") == 0)
		return tv_cmd_capture(argc - 1, argv + 1);
	if (strcmp(cmd, "put") == 0)
		return tv_cmd_put(argc - 1, argv + 1);
	if (strcmp(cmd, "query") == 0)
		return tv_cmd_query(argc - 1, argv + 1);
	if (strcmp(cmd, "summary") == 0)
		return tv_cmd_summary(argc - 1, argv + 1);
	if (strcmp(cmd, "trace") == 0)
		return tv_cmd_trace(argc - 1, argv + 1);
	if (cmd[0] == '-')
		return tv_cli_usage_error("unknown option '%s' (expected a command first)", cmd);
	return tv_cli_usage_error("unknown command '%s'", cmd);
}
