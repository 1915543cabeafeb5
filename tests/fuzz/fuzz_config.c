/* Fuzzes the configuration loader (src/cli/config.c) with arbitrary YAML. Beyond "no crash,
 * no leak", it checks two properties on every input:
 *   - a rejected input gets exactly one line of error, "fuzz.yaml:...";
 *   - an accepted one dumps to YAML that loads back to an equal configuration. */
#include "cli/config.h"

#include <stdint.h>

static void check_round_trip(const struct cn_config *cfg)
{
    char *text = NULL, err[1024];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return;
    int rc = cn_config_dump(cfg, f);
    if (fclose(f) != 0 || rc != 0) {
        free(text);
        return;
    }
    struct cn_config *again = cn_config_new();
    if (again) {
        rc = cn_config_load_buffer(again, "dump.yaml", text, len, err, sizeof(err));
        if (rc != 0 || cn_config_diff(cfg, again, 0) != cn_config_num_settings()) {
            fprintf(stderr, "fuzz_config: dump does not load back equal: %s\n%s\n",
                    rc ? err : "a setting differs", text);
            abort();
        }
        cn_config_unref(again);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    struct cn_config *cfg = cn_config_new();
    if (!cfg)
        return 0;
    err[0] = '\0';
    int rc = cn_config_load_buffer(cfg, "fuzz.yaml", (const char *)data, size, err, sizeof(err));
    if (rc == 0) {
        check_round_trip(cfg);
        cn_config_validate(cfg, err, sizeof(err));
    } else if (rc != CN_ENOMEM) {
        CN_BUG_ON(strncmp(err, "fuzz.yaml:", 10) != 0);
        CN_BUG_ON(strchr(err, '\n') != NULL);
    }
    cn_config_unref(cfg);
    return 0;
}
