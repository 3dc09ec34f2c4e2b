/* tracevault's subcommands, one file each (cmd_capture.c, cmd_put.c, cmd_query.c,
 * cmd_summary.c, cmd_trace.c); main.c dispatches to them. Each takes its own argv (argv[0] is the command name). */
#ifndef TV_COMMANDS_H
#define TV_COMMANDS_H

/* Each returns the process exit code: 0, EXIT_FAILURE, or TV_CLI_EXIT_USAGE (2). */
int tv_cmd_capture(int argc, char **argv);
int tv_cmd_put(int argc, char **argv);
int tv_cmd_query(int argc, char **argv);
int tv_cmd_summary(int argc, char **argv);
int tv_cmd_trace(int argc, char **argv);

#endif
