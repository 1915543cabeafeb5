/* The console's files (web/, built by npm), compiled into the binary by the build
 * (src/console/embed.c generates their table into the build tree). */
#ifndef CN_CONSOLE_ASSETS_H
#define CN_CONSOLE_ASSETS_H

#include <stddef.h>

/* One file as served: path from the console's root ("/index.html", "/assets/x-HASH.js"),
 * its bytes, a gzip copy (NULL when gzip would not save a tenth), and the ETag of the bytes
 * in quotes (the gzip copy's ETag adds "-gz" inside the quotes). */
struct cn_console_asset {
    const char *path;
    const unsigned char *data;
    size_t len;
    const unsigned char *gz;
    size_t gz_len;
    const char *etag;
};

/* Sorted by path (strcmp); cn_console_num_assets of them (0 when built without the
 * console). */
extern const struct cn_console_asset cn_console_assets[];
extern const size_t cn_console_num_assets;

#endif
