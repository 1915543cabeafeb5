/* Fuzzes the admin API's document conversion (src/gateway/doc.c: YAML or JSON text to a JSON
 * value) with arbitrary text. Properties checked on every input:
 *   - a rejected input gets exactly one line of error starting "fuzz:";
 *   - an accepted one, dumped as JSON and converted again, gives an equal value (the round
 *     trip the API relies on: what the compiler reads back is what was sent);
 *   - putting and deleting an object of that value in a document keeps it a document. */
#include "gateway/admin.h"

#include "base/base.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    err[0] = '\0';
    json_t *j = cn_gw_doc_from_yaml("fuzz", (const char *)data, size, err, sizeof(err));
    if (!j) {
        CN_BUG_ON(strncmp(err, "fuzz", 4) != 0);
        CN_BUG_ON(strchr(err, '\n') != NULL);
        return 0;
    }
    char *text = json_dumps(j, JSON_ENCODE_ANY | JSON_INDENT(1));
    if (text) {
        json_t *k = cn_gw_doc_from_yaml("again", text, strlen(text), err, sizeof(err));
        CN_BUG_ON(!k);
        CN_BUG_ON(!json_equal(j, k));
        json_decref(k);
        free(text);
    }
    json_t *doc = json_pack("{s:[]}", "routes");
    if (cn_gw_doc_put(doc, "routes", "r", j, err, sizeof(err)) >= 0) {
        CN_BUG_ON(!cn_gw_doc_find(doc, "routes", "r", NULL));
        CN_BUG_ON(cn_gw_doc_delete(doc, "routes", "r") != 0);
        CN_BUG_ON(json_array_size(json_object_get(doc, "routes")) != 0);
    }
    json_decref(doc);
    json_decref(j);
    return 0;
}
