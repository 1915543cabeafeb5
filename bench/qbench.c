/* Query latency client for bench/query.sh.
 *
 *   qbench URL_FILE [FIRST COUNT]
 *
 * Each line of URL_FILE is one operation: one or more URLs separated by tabs, fetched one
 * after the other over one keep-alive connection (libcurl); the operation's latency is the
 * time from the first request sent to the last answer read. Runs lines FIRST..FIRST+COUNT-1
 * (default: all) once each, in order. Prints one line per operation: latency in
 * milliseconds, then the bytes of the answers. Any answer but 200 is an error: the URL and
 * the start of the answer go to stderr and the exit status is 1. (An empty 200 is an answer:
 * ClickHouse's TabSeparated result of no rows.) */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct body {
    char *p;
    size_t len, cap;
};

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    struct body *b = ctx;
    size_t k = size * n;
    if (b->len + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + k + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, k);
    b->len += k;
    b->p[b->len] = 0;
    return k;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: qbench URL_FILE [FIRST COUNT]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    long first = argc == 4 ? atol(argv[2]) : 0, count = argc == 4 ? atol(argv[3]) : -1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    struct body b = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    char *line = NULL;
    size_t cap = 0;
    int failed = 0;
    for (long ln = 0; getline(&line, &cap, f) > 0; ln++) {
        if (ln < first || (count >= 0 && ln >= first + count))
            continue;
        line[strcspn(line, "\r\n")] = 0;
        double t0 = now_ms();
        size_t bytes = 0;
        for (char *save = NULL, *url = strtok_r(line, "\t", &save); url;
             url = strtok_r(NULL, "\t", &save)) {
            b.len = 0;
            curl_easy_setopt(c, CURLOPT_URL, url);
            CURLcode rc = curl_easy_perform(c);
            long status = 0;
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (rc != CURLE_OK || status != 200) {
                fprintf(stderr, "qbench: %s: %s, status %ld: %.300s\n", url, curl_easy_strerror(rc),
                        status, b.len ? b.p : "");
                failed = 1;
            }
            bytes += b.len;
        }
        printf("%.3f %zu\n", now_ms() - t0, bytes);
    }
    curl_easy_cleanup(c);
    curl_global_cleanup();
    free(line);
    free(b.p);
    fclose(f);
    return failed;
}
