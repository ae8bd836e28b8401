/* Streaming generation through the lav2 C API (greedy):
 *   generate MODEL_DIR [--adapter DIR] [--image FILE] [--ids 1,2,3 | PROMPT] [--max-new-tokens N]
 * Prints each piece of text as it is generated, then a newline: the stdout of
 * `lav2 generate ... --temperature 0` for the same request. An engine without a tokenizer
 * prints the generated ids, space-separated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lav2.h"

#define CHECK(call) do { if ((call) != LAV2_OK) { \
    fprintf(stderr, "generate: %s: %s\n", #call, lav2_last_error()); goto done; } } while (0)

/* user_data: -1 to print the text, else the number of ids printed so far. */
static int on_token(void *user_data, uint32_t token, const char *text, size_t text_len) {
    int *printed = user_data;
    if (*printed < 0) fwrite(text, 1, text_len, stdout);
    else printf((*printed)++ ? " %u" : "%u", (unsigned)token);
    fflush(stdout);
    return 0; /* go on */
}

int main(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *image = NULL, *prompt = NULL, *ids = NULL;
    struct lav2_generate_params params = lav2_generate_params_default();
    params.temperature = 0.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--adapter") && v) adapter = argv[++i];
        else if (!strcmp(a, "--image") && v) image = argv[++i];
        else if (!strcmp(a, "--ids") && v) ids = argv[++i];
        else if (!strcmp(a, "--max-new-tokens") && v) params.max_new_tokens = strtoul(argv[++i], NULL, 10);
        else if (!model) model = a;
        else prompt = a;
    }
    if (!model || (!prompt == !ids)) {
        fprintf(stderr, "usage: generate MODEL_DIR [--adapter DIR] [--image FILE] "
                        "[--ids 1,2,3 | PROMPT] [--max-new-tokens N]\n");
        return 2;
    }
    int rc = 1, n = -1;
    uint32_t prompt_ids[4096];
    size_t n_ids = 0;
    lav2_engine *engine = NULL;
    lav2_session *session = NULL;
    struct lav2_engine_info info;
    for (const char *p = ids; p && *p;) { /* "1,2,3" */
        char *end;
        unsigned long id = strtoul(p, &end, 10);
        if (end == p || (*end && *end != ',') || n_ids == 4096) {
            fprintf(stderr, "generate: --ids takes comma-separated token ids: %s\n", ids);
            goto done;
        }
        prompt_ids[n_ids++] = (uint32_t)id;
        p = *end ? end + 1 : end;
    }
    CHECK(lav2_engine_load(model, adapter, NULL, &engine));
    CHECK(lav2_engine_get_info(engine, &info));
    CHECK(lav2_session_new(engine, &session));
    if (image) CHECK(lav2_session_set_image_file(session, image));
    if (ids) CHECK(lav2_session_prefill_ids(session, prompt_ids, n_ids));
    else CHECK(lav2_session_prefill_text(session, prompt));
    if (!info.has_tokenizer) n = 0;
    CHECK(lav2_session_generate(session, &params, on_token, &n, NULL));
    printf("\n");
    rc = 0;
done:
    if (session) lav2_session_free(session);
    if (engine) lav2_engine_free(engine);
    return rc;
}
