/* Scratch directories of the unit tests and fuzz targets (header only: the unit and fuzz builds
 * share no library). */
#ifndef CN_TESTS_TMPDIR_H
#define CN_TESTS_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

/* Unlinks every entry of dir (a flat directory; dot files too, but not . and ..). Returns 0,
 * or -1 when dir could not be read or an entry not unlinked (the others still are). */
static inline int cn_test_clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' &&
            (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
            continue;
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

/* cn_test_clear_dir, then the directory itself. Returns 0 or -1. */
static inline int cn_test_remove_dir(const char *dir)
{
    int rc = cn_test_clear_dir(dir);
    return rmdir(dir) == 0 ? rc : -1;
}

#endif
