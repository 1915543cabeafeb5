#include "base/base.h"
#include "cli/cmd.h"
#include "version.h"

#include <jansson.h>
#include <llhttp.h>
#include <uv.h>

int cmd_version(int argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return cn_usage_error("version", "unknown flag '%s'", argv[i]);
    }
    if (json) {
        printf("{\"version\":\"%s\",\"git\":\"%s\",\"libuv\":\"%s\",\"llhttp\":\"%d.%d.%d\","
               "\"jansson\":\"%s\"}\n",
               CAIRN_VERSION, CAIRN_GIT, uv_version_string(), LLHTTP_VERSION_MAJOR,
               LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, JANSSON_VERSION);
    } else {
        printf("cairn %s (git %s; libuv %s, llhttp %d.%d.%d, jansson %s)\n", CAIRN_VERSION,
               CAIRN_GIT, uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
               LLHTTP_VERSION_PATCH, JANSSON_VERSION);
    }
    return CN_EXIT_OK;
}
