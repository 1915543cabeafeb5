/* cairn: one binary, git-style command table. */
#include "base/base.h"
#include "cli/cmd.h"

#include <stdarg.h>

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *usage;
};

static const struct cmd commands[] = {
    {"up", cmd_up, "run every part of Cairn in one process",
     "usage: cairn up [-c FILE] [--workers N] [--api-listen HOST:PORT] [--log-level LEVEL]\n"
     "                [--set KEY=VALUE]... [--demo [--demo-rps N] [--demo-gateway HOST:PORT]\n"
     "                [--demo-route gateway|registry|direct] [--demo-dir DIR]]\n"
     "\n"
     "  -c, --config FILE     YAML configuration (docs/configuration.md)\n"
     "  --workers N           worker threads (0 = one per core)\n"
     "  --api-listen ADDR     console/API/metrics address (default 127.0.0.1:9000)\n"
     "  --log-level LEVEL     debug, info, warn, error\n"
     "  --set KEY=VALUE       any setting by its dotted name, e.g. http.max_body_bytes=1m\n"
     "  --demo                also run the demo shop (docs/demo.md): six Node services behind\n"
     "                        a gateway on --demo-gateway (127.0.0.1:8080), --demo-rps\n"
     "                        requests/s of load (5), calls via --demo-route (gateway)\n"
     "\n"
     "Precedence, lowest first: defaults, the file, CAIRN_* environment, flags.\n"
     "SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the configuration file.\n"},
    {"version", cmd_version, "print the version", "usage: cairn version [--json]\n"},
    {"config", cmd_config, "check or show a configuration; read and write the config center",
     "usage: cairn config check FILE [--json]\n"
     "       cairn config show [FILE]\n"
     "       cairn config get DATA_ID [--group G] [--namespace NS] [--json]\n"
     "       cairn config put DATA_ID [--content TEXT | --file F] [--type T] [--group G]\n"
     "                        [--namespace NS]\n"
     "       cairn config history DATA_ID [--limit N] [--group G] [--namespace NS] [--json]\n"
     "       cairn config rollback DATA_ID VERSION [--group G] [--namespace NS]\n"
     "       (the last four also take --server URL --token TOKEN)\n"
     "\n"
     "check reports the first error as FILE:LINE:COL: message and exits 3 when the\n"
     "configuration is invalid; show prints the effective configuration (defaults, the\n"
     "file, then CAIRN_* environment variables).\n"
     "get prints an item's content as stored; put publishes (content from --content, --file\n"
     "or stdin) and prints the new version; history lists versions newest first (VERSION,\n"
     "OP, MD5, SIZE, WHO, TIME); rollback publishes an old version's content again.\n"
     "The group defaults to DEFAULT_GROUP, the namespace to public (docs/registry.md).\n"},
    {"trace", cmd_trace, "look at traces on a running server",
     "usage: cairn trace get TRACE_ID [--server URL] [--token TOKEN] [--json]\n"
     "       cairn trace search [--service S] [--operation O] [--tag K=V]... [--status S]\n"
     "                          [--kind K] [--min-duration D] [--max-duration D]\n"
     "                          [--start T] [--end T] [--limit N] [--order start|duration]\n"
     "                          [--server URL] [--token TOKEN] [--json]\n"
     "\n"
     "get prints the trace as an indented tree: operation, service, kind, start offset,\n"
     "duration, and ERROR with the status message. search lists matching traces, newest\n"
     "first; --tag takes k=v, k!=v, k=~regex, k>n, k<n (docs/query.md). --json prints the\n"
     "server's JSON. The server defaults to CAIRN_SERVER or http://127.0.0.1:9000; the token\n"
     "to CAIRN_API_TOKEN. Exit 1 when the trace is not found, the server refuses the query\n"
     "or cannot be reached.\n"},
    {"topo", cmd_topo, "show the service topology with request/error/latency figures",
     "usage: cairn topo [--service S [--depth N]] [--start T] [--end T] [--server URL]\n"
     "                  [--token TOKEN] [--json]\n"
     "\n"
     "Prints each service (requests, errors, rate, p50/p95/p99) and each edge caller -> callee\n"
     "over the range (default: the last hour). Exit 1 when the query fails.\n"},
    {"logs", cmd_logs, "search or follow log records",
     "usage: cairn logs [--service S] [--severity LEVEL] [--grep TERM]... [--attr K=V]...\n"
     "                  [--trace ID] [--start T] [--end T] [--limit N] [-f] [--server URL]\n"
     "                  [--token TOKEN] [--json]\n"
     "\n"
     "Prints matching records newest first: time, severity, service, body, trace and span,\n"
     "code link. -f follows new records as they are ingested until interrupted. Exit 1\n"
     "when the query fails.\n"},
    {"rca", cmd_rca, "rank the likely root causes of a service's errors and latency",
     "usage: cairn rca --service S [--since D | --start T --end T]\n"
     "                 [--baseline-start T --baseline-end T] [--limit N] [--server URL]\n"
     "                 [--token TOKEN] [--json]\n"
     "       cairn rca --trace ID [--service S] [--baseline-start T --baseline-end T] ...\n"
     "\n"
     "Ranks suspects (service, operation, kind: error_origin, new_error, latency,\n"
     "traffic_change) behind the service's requests in the window (default: the last 15\n"
     "minutes; --since 1h) against the baseline (default: the window of equal length just\n"
     "before), or behind one trace. Prints a table, then for the first suspects the figures\n"
     "before and after, example traces, the failing span and its logs. The method and the\n"
     "scores: docs/rca.md. Exit 1 when the analysis fails.\n"},
    {"gateway", cmd_gateway, "run the gateway alone, or look at a running one (docs/gateway.md)",
     "usage: cairn gateway -c FILE [--workers N] [--log-level LEVEL] [--admin-token-file "
     "FILE]\n"
     "       cairn gateway status|routes|clusters [--server URL] [--token T] [--json]\n\n"
     "  status, routes, clusters: a running gateway's configuration generation per worker,\n"
     "  its routes with their matches, backends and RED, its clusters' endpoints with health\n"
     "  and ejection (GET /api/v1/gateway/status of cairn up's API port, or of cairn gateway's\n"
     "  admin listener with --server http://127.0.0.1:9901)\n\n  -c, --config FILE   gateway YAML "
     "(examples/gateway.yaml); reloaded on SIGHUP and "
     "when it changes\n  --workers N         worker threads (overrides the file's workers; 0 = "
     "one per core)\n  --log-level LEVEL   debug, info, warn, error\n  --admin-token-file FILE  "
     "bearer token of the admin API (or CAIRN_GATEWAY_ADMIN_TOKEN); required when admin.address "
     "is not loopback\n\nExit 3 when the configuration is invalid; SIGTERM/SIGINT drain and exit "
     "0.\n"},
    {"registry", cmd_registry, "list, show, add and remove service instances",
     "usage: cairn registry ls [--namespace NS] [--group G] [--json]\n"
     "       cairn registry get SERVICE [--namespace NS] [--group G] [--json]\n"
     "       cairn registry put SERVICE IP:PORT [--weight W] [--cluster C]\n"
     "                          [--metadata k=v,k2=v2] [--ephemeral]\n"
     "       cairn registry rm SERVICE IP:PORT [--cluster C]\n"
     "       (all take --server URL --token TOKEN)\n"
     "\n"
     "ls lists the services of a namespace; get prints a service's instances (IP, PORT,\n"
     "CLUSTER, WEIGHT, HEALTHY, ENABLED, EPHEMERAL, METADATA); put registers an instance\n"
     "(persistent, checked by the server, unless --ephemeral); rm deregisters it. The group\n"
     "defaults to DEFAULT_GROUP, the namespace to public. Exit 1 when the server refuses\n"
     "(the message names the field) or cannot be reached.\n"},
    {"demo", cmd_demo, "flip the demo's fault switches, show its processes (cairn up --demo)",
     "usage: cairn demo fault SERVICE error|latency|bad-version|clear\n"
     "                        [--error-rate R] [--latency-ms MS]\n"
     "       cairn demo status [--json]\n"
     "       (both take --server URL --token TOKEN)\n"
     "\n"
     "SERVICE is frontend, recommendations, checkout, inventory, payments or shipping (all\n"
     "with clear). error makes a share of its requests fail (--error-rate, default 0.5);\n"
     "latency adds time to each request (--latency-ms, default 400); bad-version deploys its\n"
     "next version, which fails a share of requests (default 0.4) with a new error; clear\n"
     "switches it back. status lists the demo's processes and the switches. docs/demo.md.\n"},
    {"help", cmd_help, "show help for a command", "usage: cairn help [COMMAND]\n"},
};

static const struct cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int cn_print_usage(const char *name, void *fp)
{
    FILE *f = fp;
    if (name) {
        const struct cmd *c = find_cmd(name);
        if (!c)
            return -1;
        fputs(c->usage, f);
        return 0;
    }
    fputs("usage: cairn COMMAND [ARGS]\n\ncommands:\n", f);
    for (size_t i = 0; i < CN_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("\nRun 'cairn help COMMAND' for a command's flags. Exit codes: 0 ok, 1 failure,\n"
          "2 usage error, 3 invalid configuration (docs/cli.md).\n",
          f);
    return 0;
}

int cn_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cairn: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    cn_print_usage(cmd, stderr);
    return CN_EXIT_USAGE;
}

int cmd_help(int argc, char **argv)
{
    if (argc > 2)
        return cn_usage_error("help", "too many arguments");
    if (argc == 2) {
        if (cn_print_usage(argv[1], stdout) != 0)
            return cn_usage_error(NULL, "unknown command '%s'", argv[1]);
        return CN_EXIT_OK;
    }
    cn_print_usage(NULL, stdout);
    return CN_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return cn_usage_error(NULL, "no command given");
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return cmd_help(1, argv + 1);
    if (strcmp(name, "--version") == 0)
        return cmd_version(1, argv + 1);
    if (name[0] == '-')
        return cn_usage_error(NULL, "unknown flag '%s'", name);
    const struct cmd *c = find_cmd(name);
    if (!c)
        return cn_usage_error(NULL, "unknown command '%s'", name);
    return c->fn(argc - 1, argv + 1);
}
