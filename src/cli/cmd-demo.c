/* cairn demo: the demo of a running `cairn up --demo` (docs/demo.md). `fault` flips a fault
 * switch through POST /api/v1/demo/faults, `status` prints GET /api/v1/demo; `exec` is the
 * trampoline cairn starts the demo's processes through (demo.c). */
#include "cli/client.h"
#include "cli/cmd.h"
#include "cli/demo.h"

#include <jansson.h>

static void print_faults(json_t *faults)
{
    const char *svc;
    json_t *f;
    int any = 0;
    json_object_foreach(faults, svc, f)
    {
        const char *kind = json_string_value(json_object_get(f, "fault"));
        json_t *rate = json_object_get(f, "errorRate"), *lat = json_object_get(f, "latencyMs");
        printf("  %-16s %s", svc, kind ? kind : "?");
        if (json_is_number(rate))
            printf(" (%.0f%% of requests fail)", json_number_value(rate) * 100);
        if (json_is_integer(lat))
            printf(" (+%lld ms per request)", (long long)json_integer_value(lat));
        putchar('\n');
        any = 1;
    }
    if (!any)
        printf("  none\n");
}

int cmd_demo(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "exec") == 0)
        return cn_demo_exec(argc - 1, argv + 1);
    if (argc < 2)
        return cn_usage_error("demo", "missing subcommand");
    const char *sub = argv[1];
    int is_fault = strcmp(sub, "fault") == 0;
    if (!is_fault && strcmp(sub, "status") != 0)
        return cn_usage_error("demo", "unknown subcommand '%s'", sub);
    struct cn_client cl;
    cn_client_defaults(&cl);
    struct cn_demo_fault f = {0};
    int json = 0, npos = 0;
    const char *pos[2] = {NULL, NULL};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cn_print_usage("demo", stdout);
            return CN_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--server") == 0 || strcmp(a, "--token") == 0 ||
                   (is_fault &&
                    (strcmp(a, "--error-rate") == 0 || strcmp(a, "--latency-ms") == 0))) {
            if (!v)
                return cn_usage_error("demo", "flag '%s' needs a value", a);
            i++;
            if (a[2] == 's')
                cl.server = v;
            else if (a[2] == 't')
                cl.token = v;
            else {
                char *end;
                double d = strtod(v, &end);
                if (!*v || *end)
                    return cn_usage_error("demo", "%s takes a number, got '%s'", a, v);
                if (a[2] == 'e') {
                    if (!(d > 0 && d <= 1))
                        return cn_usage_error("demo", "--error-rate is from 0 to 1, got '%s'", v);
                    f.error_rate = d;
                } else {
                    if (!(d >= 1 && d <= 60000))
                        return cn_usage_error("demo", "--latency-ms is from 1 to 60000, got '%s'",
                                              v);
                    f.latency_ms = (unsigned)d;
                }
            }
        } else if (a[0] == '-') {
            return cn_usage_error("demo", "unknown flag '%s'", a);
        } else if (npos < (is_fault ? 2 : 0)) {
            pos[npos++] = a;
        } else {
            return cn_usage_error("demo", "unexpected argument '%s'", a);
        }
    }
    if (is_fault && npos < 2)
        return cn_usage_error("demo", "fault needs SERVICE and error|latency|bad-version|clear");
    struct cn_buf body, req;
    cn_buf_init(&body, 4u << 20);
    cn_buf_init(&req, 4096);
    long status = 0;
    char err[512];
    int rc = CN_EXIT_OK, crc;
    if (is_fault) {
        f.service = pos[0];
        f.fault = pos[1];
        /* Checked here too, for a message before any request. */
        struct cn_buf scratch;
        cn_buf_init(&scratch, 4096);
        crc = cn_demo_fault_apply(NULL, 0, &f, &scratch, err, sizeof(err));
        cn_buf_release(&scratch);
        if (crc) {
            rc = cn_usage_error("demo", "%s", err);
            goto out;
        }
        json_t *o = json_pack("{s:s, s:s}", "service", f.service, "fault", f.fault);
        if (f.error_rate > 0)
            json_object_set_new(o, "errorRate", json_real(f.error_rate));
        if (f.latency_ms)
            json_object_set_new(o, "latencyMs", json_integer(f.latency_ms));
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        crc = text ? cn_client_post_json(&cl, "/api/v1/demo/faults", text, &body, &status, err,
                                         sizeof(err))
                   : CN_ENOMEM;
        free(text);
    } else {
        crc = cn_client_get(&cl, "/api/v1/demo", &body, &status, err, sizeof(err));
    }
    if (crc) {
        fprintf(stderr, "cairn: %s\n", crc == CN_ENOMEM ? "out of memory" : err);
        rc = CN_EXIT_FAIL;
        goto out;
    }
    if (status != 200) {
        rc = cn_client_report("demo", status, &body);
        goto out;
    }
    if (json) {
        fwrite(body.ptr, 1, body.len, stdout);
        goto out;
    }
    json_error_t je;
    json_t *doc = json_loadb(body.ptr ? body.ptr : "", body.len, 0, &je);
    if (!doc) {
        fprintf(stderr, "cairn: the server's answer is not JSON: %s\n", je.text);
        rc = CN_EXIT_FAIL;
        goto out;
    }
    if (is_fault) {
        printf("fault switches now (version %lld):\n",
               (long long)json_integer_value(json_object_get(doc, "version")));
    } else {
        printf("gateway %s, calls via %s, %lld requests/s of load\n",
               json_string_value(json_object_get(doc, "gateway")),
               json_string_value(json_object_get(doc, "route")),
               (long long)json_integer_value(json_object_get(doc, "rps")));
        printf("%-16s %-8s %-8s %-7s %-11s %s\n", "NAME", "KIND", "PID", "PORT", "STATE",
               "RESTARTS");
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(doc, "processes"), i, p)
        {
            json_t *port = json_object_get(p, "port");
            char ps[16] = "-";
            if (json_is_integer(port))
                snprintf(ps, sizeof(ps), "%lld", (long long)json_integer_value(port));
            printf("%-16s %-8s %-8lld %-7s %-11s %lld\n",
                   json_string_value(json_object_get(p, "name")),
                   json_string_value(json_object_get(p, "kind")),
                   (long long)json_integer_value(json_object_get(p, "pid")), ps,
                   json_string_value(json_object_get(p, "state")),
                   (long long)json_integer_value(json_object_get(p, "restarts")));
        }
        printf("fault switches:\n");
    }
    print_faults(json_object_get(doc, "faults"));
    json_decref(doc);
out:
    cn_buf_release(&body);
    cn_buf_release(&req);
    return rc;
}
