/* Subcommands of the cairn binary; one cmd-*.c per command. */
#ifndef CN_CMD_H
#define CN_CMD_H

/* Exit codes, documented in docs/cli.md. */
enum cn_exit {
    CN_EXIT_OK = 0,
    CN_EXIT_FAIL = 1,   /* the command ran and failed (runtime error) */
    CN_EXIT_USAGE = 2,  /* unknown command or flag, missing argument */
    CN_EXIT_CONFIG = 3, /* the configuration is invalid */
};

/* Each takes argv with argv[0] = the command's name. */
int cmd_up(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_topo(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_gateway(int argc, char **argv);
int cmd_rca(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_registry(int argc, char **argv);
/* cairn config get|put|history|rollback (cmd-registry.c); argv[1] is the subcommand. */
int cn_config_center(int argc, char **argv);
/* cairn gateway status|routes|clusters (cmd-gwctl.c); argv[1] is the subcommand. */
int cn_gateway_ctl(int argc, char **argv);
/* cairn trace search (cmd-query.c); argv[1] is "search". */
int cn_trace_search(int argc, char **argv);

/* Prints "cairn: MSG" and the usage of cmd (or the general usage) to stderr; returns
 * CN_EXIT_USAGE. */
int cn_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the usage text of cmd (NULL: general) to f. Returns 0, or -1 for unknown cmd. */
int cn_print_usage(const char *cmd, void *f);

#endif
