/* Build-time generator (not part of the cairn binary): turns the console's built files
 * (web/, built by npm into the build tree) into a C source holding each file's bytes, a
 * gzip copy when that is smaller, and an ETag, as the table declared in console/assets.h.
 *
 *   cairn_embed OUT.c DIR
 *
 * Files are listed in path order (the server looks them up by binary search) and the output
 * depends on nothing but their contents, so identical inputs give an identical source. Exit
 * 0, or 1 with a message on stderr (the build fails then); OUT.c is written whole through a
 * temporary file, never left half-written. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define MAX_FILES 4096
#define MAX_FILE  (32u << 20) /* a console file past this is a build mistake */

struct file {
    char *path; /* relative to DIR, with a leading '/' */
    unsigned char *data;
    size_t len;
    unsigned char *gz; /* NULL when gzip does not pay */
    size_t gz_len;
};

static struct file files[MAX_FILES];
static size_t num_files;

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "cairn_embed: %s %s: %s\n", what, path, errno ? strerror(errno) : "");
    return -1;
}

static int read_file(const char *full, struct file *f)
{
    FILE *fp = fopen(full, "rb");
    if (!fp)
        return fail("cannot open", full);
    struct stat st;
    if (fstat(fileno(fp), &st) < 0 || st.st_size < 0 || (uint64_t)st.st_size > MAX_FILE) {
        fclose(fp);
        errno = EFBIG;
        return fail("cannot size or too large:", full);
    }
    f->len = (size_t)st.st_size;
    f->data = malloc(f->len ? f->len : 1);
    if (!f->data || fread(f->data, 1, f->len, fp) != f->len) {
        fclose(fp);
        return fail("cannot read", full);
    }
    fclose(fp);
    return 0;
}

/* gzip at level 9 with a zeroed header time, so builds are reproducible. */
static int compress_file(struct file *f)
{
    if (f->len < 256)
        return 0;
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong cap = deflateBound(&z, (uLong)f->len);
    unsigned char *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = f->data;
    z.avail_in = (uInt)f->len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return -1;
    }
    /* Worth it only when it saves a tenth (images and fonts are compressed already). */
    if (n * 10 >= f->len * 9) {
        free(out);
        return 0;
    }
    f->gz = out;
    f->gz_len = n;
    return 0;
}

static int walk(const char *root, const char *rel)
{
    char dir[4096];
    if (snprintf(dir, sizeof(dir), "%s%s", root, rel) >= (int)sizeof(dir))
        return fail("path too long:", rel);
    DIR *d = opendir(dir);
    if (!d)
        return fail("cannot open directory", dir);
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", and dot files (never served) */
        char sub[4096], full[4096];
        if (snprintf(sub, sizeof(sub), "%s/%s", rel, e->d_name) >= (int)sizeof(sub) ||
            snprintf(full, sizeof(full), "%s%s", root, sub) >= (int)sizeof(full)) {
            rc = fail("path too long:", e->d_name);
            break;
        }
        struct stat st;
        if (stat(full, &st) < 0) {
            rc = fail("cannot stat", full);
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(root, sub);
        } else if (S_ISREG(st.st_mode)) {
            if (num_files == MAX_FILES) {
                errno = 0;
                rc = fail("too many files in", root);
                break;
            }
            struct file *f = &files[num_files++];
            if (!(f->path = strdup(sub)))
                rc = fail("out of memory for", sub);
            else if ((rc = read_file(full, f)) == 0 && compress_file(f) < 0)
                rc = fail("cannot compress", full);
        }
    }
    closedir(d);
    return rc;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const struct file *)a)->path, ((const struct file *)b)->path);
}

/* FNV-1a, 64 bits: an ETag only has to change when the bytes do. */
static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void put_bytes(FILE *o, const char *name, size_t i, const unsigned char *p, size_t n)
{
    fprintf(o, "static const unsigned char %s%zu[%zu] = {", name, i, n ? n : 1);
    for (size_t k = 0; k < n; k++)
        fprintf(o, "%s%u,", k % 24 ? "" : "\n", p[k]);
    fprintf(o, "%s};\n", n ? "\n" : "0");
}

/* A C string literal of s (paths are plain, but escape anyway). */
static void put_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(o, "\\%03o", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: cairn_embed OUT.c DIR\n");
        return 2;
    }
    const char *out = argv[1], *root = argv[2];
    if (walk(root, "") < 0)
        return 1;
    qsort(files, num_files, sizeof(files[0]), by_path);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", out);
    FILE *o = fopen(tmp, "w");
    if (!o)
        return fail("cannot create", tmp) < 0;
    fprintf(o, "/* Generated by cairn_embed from the built console (web/); not edited, not "
               "committed. */\n#include \"console/assets.h\"\n\n");
    for (size_t i = 0; i < num_files; i++) {
        put_bytes(o, "raw", i, files[i].data, files[i].len);
        if (files[i].gz)
            put_bytes(o, "gz", i, files[i].gz, files[i].gz_len);
    }
    fprintf(o, "\nconst struct cn_console_asset cn_console_assets[] = {\n");
    for (size_t i = 0; i < num_files; i++) {
        struct file *f = &files[i];
        char etag[40];
        snprintf(etag, sizeof(etag), "\"%016llx\"", (unsigned long long)fnv1a(f->data, f->len));
        fprintf(o, "    {");
        put_str(o, f->path);
        fprintf(o, ", raw%zu, %zu, ", i, f->len);
        if (f->gz)
            fprintf(o, "gz%zu, %zu, ", i, f->gz_len);
        else
            fprintf(o, "NULL, 0, ");
        put_str(o, etag);
        fprintf(o, "},\n");
    }
    if (!num_files)
        fprintf(o, "    {NULL, NULL, 0, NULL, 0, NULL},\n");
    fprintf(o, "};\nconst size_t cn_console_num_assets = %zu;\n", num_files);
    int bad = ferror(o);
    if (fclose(o) != 0 || bad) {
        remove(tmp);
        return fail("cannot write", tmp) < 0;
    }
    if (rename(tmp, out) < 0) {
        remove(tmp);
        return fail("cannot rename to", out) < 0;
    }
    for (size_t i = 0; i < num_files; i++) {
        free(files[i].path);
        free(files[i].data);
        free(files[i].gz);
    }
    return 0;
}
