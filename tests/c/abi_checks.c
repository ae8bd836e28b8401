/* Bad calls through the lav2 C API: each must return its code with a message, never crash.
 *   abi_checks STORIES260K_DIR [ADAPTER_CASE_DIR]   (exit 0 when every check passes)
 * STORIES260K_DIR: a model with a tokenizer; ADAPTER_CASE_DIR: base/ and adapter/ (with a
 * vision tower) for the image calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lav2.h"

static int failures = 0, checks = 0;

/* `status` must be `want`; a failure must come with a message naming `mention` (if given). */
static void expect(const char *what, lav2_status status, lav2_status want, const char *mention) {
    const char *msg = lav2_last_error();
    checks++;
    if (status != want) {
        fprintf(stderr, "FAIL %s: status %d, expected %d (%s)\n", what, (int)status, (int)want, msg);
        failures++;
    } else if (want != LAV2_OK && (msg[0] == '\0' || (mention && !strstr(msg, mention)))) {
        fprintf(stderr, "FAIL %s: message '%s' should name '%s'\n", what, msg, mention ? mention : "");
        failures++;
    } else if (want == LAV2_OK && msg[0] != '\0') {
        fprintf(stderr, "FAIL %s: succeeded but lav2_last_error() is '%s'\n", what, msg);
        failures++;
    }
}

static void truth(const char *what, int ok) {
    checks++;
    if (!ok) {
        fprintf(stderr, "FAIL %s\n", what);
        failures++;
    }
}

#define EXPECT(call, want, mention) expect(#call, (call), (want), (mention))
#define TRUTH(cond) truth(#cond, (cond))

struct stop_at { int seen, stop_after; lav2_session *self; lav2_status reentrant; };

/* Stops after `stop_after` tokens; tries a call on its own session, which must be refused. */
static int stop_at_three(void *user_data, uint32_t token, const char *text, size_t text_len) {
    struct stop_at *s = user_data;
    (void)token;
    if (strlen(text) != text_len) s->reentrant = LAV2_ERR_INTERNAL; /* text is NUL-terminated */
    else if (s->seen == 0) s->reentrant = lav2_session_reset(s->self);
    return ++s->seen == s->stop_after;
}

static void session_checks(lav2_engine *engine, lav2_session *s, size_t vocab) {
    uint32_t bad = (uint32_t)vocab, token = 0;
    size_t len = 0;
    float *logits = malloc(vocab * sizeof *logits);
    EXPECT(lav2_session_logits(s, NULL, 0, &len), LAV2_ERR_BAD_INPUT, "prefill");
    EXPECT(lav2_session_prefill_ids(s, NULL, 0), LAV2_ERR_BAD_INPUT, "empty");
    EXPECT(lav2_session_prefill_ids(s, &bad, 1), LAV2_ERR_BAD_INPUT, "vocabulary");
    EXPECT(lav2_session_prefill_ids(s, NULL, 2), LAV2_ERR_BAD_INPUT, "ids");
    EXPECT(lav2_session_prefill_text(s, "\xff\xfe"), LAV2_ERR_BAD_INPUT, "UTF-8");
    EXPECT(lav2_session_prefill_text(s, NULL), LAV2_ERR_BAD_INPUT, "text");
    EXPECT(lav2_session_set_image_file(s, "x.jpg"), LAV2_ERR_BAD_INPUT, "vision");
    EXPECT(lav2_session_step(s, NULL, &token), LAV2_ERR_BAD_INPUT, "prefill");
    EXPECT(lav2_session_prefill_text(s, "Once upon a time"), LAV2_OK, NULL);
    EXPECT(lav2_session_logits(s, NULL, 0, &len), LAV2_OK, NULL);
    TRUTH(len == vocab);
    len = 0;
    EXPECT(lav2_session_logits(s, logits, vocab - 1, &len), LAV2_ERR_BAD_INPUT, "buffer");
    TRUTH(len == vocab);
    EXPECT(lav2_session_logits(s, logits, vocab, NULL), LAV2_ERR_BAD_INPUT, "len_out");
    EXPECT(lav2_session_logits(s, logits, vocab, &len), LAV2_OK, NULL);
    EXPECT(lav2_session_step(s, NULL, NULL), LAV2_ERR_BAD_INPUT, "token_out");
    EXPECT(lav2_session_step(s, NULL, &token), LAV2_OK, NULL);
    TRUTH(token < vocab);
    struct lav2_generate_params p = lav2_generate_params_default();
    p.temperature = -1.0f;
    EXPECT(lav2_session_generate(s, &p, NULL, NULL, NULL), LAV2_ERR_BAD_INPUT, "temperature");
    p.temperature = 0.0f;
    struct stop_at stop = {0, 3, s, LAV2_OK};
    struct lav2_generation gen = {0, LAV2_STOP_EOS};
    EXPECT(lav2_session_generate(s, &p, stop_at_three, &stop, &gen), LAV2_OK, NULL);
    TRUTH(gen.n_tokens == 3 && gen.stop_reason == LAV2_STOP_STOPPED && stop.seen == 3);
    TRUTH(stop.reentrant == LAV2_ERR_BUSY);
    EXPECT(lav2_session_reset(s), LAV2_OK, NULL);
    EXPECT(lav2_session_prefill_text(s, "Once upon a time"), LAV2_OK, NULL);
    p.max_new_tokens = 5;
    EXPECT(lav2_session_generate(s, &p, NULL, NULL, &gen), LAV2_OK, NULL);
    TRUTH(gen.n_tokens == 5 && gen.stop_reason == LAV2_STOP_MAX_NEW_TOKENS);
    (void)engine;
    free(logits);
}

static void tokenizer_checks(lav2_engine *engine) {
    uint32_t ids[64];
    size_t len = 0;
    char *text = NULL;
    EXPECT(lav2_tokenize(engine, "Once upon a time", 1, NULL, 0, &len), LAV2_OK, NULL);
    TRUTH(len > 1 && len < 64);
    size_t want = len;
    EXPECT(lav2_tokenize(engine, "Once upon a time", 1, ids, 1, &len), LAV2_ERR_BAD_INPUT, "buffer");
    TRUTH(len == want);
    EXPECT(lav2_tokenize(engine, "Once upon a time", 1, ids, 64, &len), LAV2_OK, NULL);
    EXPECT(lav2_tokenize(engine, "\xc3\x28", 1, ids, 64, &len), LAV2_ERR_BAD_INPUT, "text");
    EXPECT(lav2_detokenize(engine, ids + 1, len - 1, &text), LAV2_OK, NULL);
    TRUTH(text && strcmp(text, "Once upon a time") == 0);
    EXPECT(lav2_string_free(text), LAV2_OK, NULL);
    EXPECT(lav2_string_free(text), LAV2_ERR_INVALID_HANDLE, "freed");
    EXPECT(lav2_string_free(NULL), LAV2_OK, NULL);
    EXPECT(lav2_detokenize(engine, ids, len, NULL), LAV2_ERR_BAD_INPUT, "out");
}

static void image_checks(const char *case_dir) {
    char base[4096], adapter[4096];
    snprintf(base, sizeof base, "%s/base", case_dir);
    snprintf(adapter, sizeof adapter, "%s/adapter", case_dir);
    lav2_engine *e = NULL;
    lav2_session *s = NULL;
    struct lav2_engine_info info = {0};
    EXPECT(lav2_engine_load(base, adapter, NULL, &e), LAV2_OK, NULL);
    EXPECT(lav2_engine_get_info(e, &info), LAV2_OK, NULL);
    TRUTH(info.has_adapter && !info.has_tokenizer && info.image_size > 0);
    EXPECT(lav2_session_new(e, &s), LAV2_OK, NULL);
    EXPECT(lav2_session_prefill_text(s, "x"), LAV2_ERR_BAD_INPUT, "tokenizer");
    size_t n = 3 * info.image_size * info.image_size;
    float *pixels = calloc(n, sizeof *pixels);
    uint8_t rgb[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};
    EXPECT(lav2_session_set_image_pixels(s, pixels, n - 1), LAV2_ERR_BAD_INPUT, "pixels");
    EXPECT(lav2_session_set_image_rgb8(s, NULL, 2, 2), LAV2_ERR_BAD_INPUT, "data");
    EXPECT(lav2_session_set_image_file(s, "/nonexistent.jpg"), LAV2_ERR_MODEL_FILE, "/nonexistent.jpg");
    EXPECT(lav2_session_set_image_rgb8(s, rgb, 2, 2), LAV2_OK, NULL);
    EXPECT(lav2_session_set_image_pixels(s, pixels, n), LAV2_OK, NULL);
    EXPECT(lav2_session_prefill_ids(s, (const uint32_t[]){1, 156, 197}, 3), LAV2_OK, NULL);
    EXPECT(lav2_session_set_image_pixels(s, pixels, n), LAV2_ERR_BAD_INPUT, "before the prompt");
    EXPECT(lav2_session_reset(s), LAV2_OK, NULL);
    EXPECT(lav2_session_set_image_pixels(s, pixels, n), LAV2_OK, NULL);
    free(pixels);
    EXPECT(lav2_session_free(s), LAV2_OK, NULL);
    EXPECT(lav2_engine_free(e), LAV2_OK, NULL);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) return fprintf(stderr, "usage: abi_checks STORIES260K_DIR [ADAPTER_CASE_DIR]\n"), 2;
    lav2_engine *engine = NULL, *none = NULL;
    lav2_session *s = NULL, *s2 = NULL;
    TRUTH(lav2_abi_version() == LAV2_ABI_VERSION && strlen(lav2_version()) > 0);
    TRUTH(lav2_live_handles() == 0);
    struct lav2_engine_options o = lav2_engine_options_default();
    EXPECT(lav2_engine_load("/nonexistent/lav2-model", NULL, NULL, &none), LAV2_ERR_MODEL_FILE, "/nonexistent");
    TRUTH(none == NULL);
    EXPECT(lav2_engine_load(NULL, NULL, NULL, &none), LAV2_ERR_BAD_INPUT, "model_dir");
    EXPECT(lav2_engine_load(argv[1], NULL, NULL, NULL), LAV2_ERR_BAD_INPUT, "out");
    o.device = 42;
    EXPECT(lav2_engine_load(argv[1], NULL, &o, &none), LAV2_ERR_BAD_INPUT, "device");
    o.device = LAV2_DEVICE_CPU;
    EXPECT(lav2_engine_load(argv[1], NULL, &o, &engine), LAV2_OK, NULL);
    if (!engine) return fprintf(stderr, "no engine: stopping\n"), 1;
    struct lav2_engine_info info;
    EXPECT(lav2_engine_get_info(engine, &info), LAV2_OK, NULL);
    TRUTH(info.vocab_size > 0 && info.has_tokenizer && !info.has_adapter && info.image_size == 0);
    EXPECT(lav2_session_new(NULL, &s), LAV2_ERR_INVALID_HANDLE, "NULL");
    EXPECT(lav2_session_prefill_text(NULL, "x"), LAV2_ERR_INVALID_HANDLE, "NULL");
    EXPECT(lav2_engine_get_info(NULL, &info), LAV2_ERR_INVALID_HANDLE, "NULL");
    EXPECT(lav2_session_new(engine, &s), LAV2_OK, NULL);
    EXPECT(lav2_session_new(engine, &s2), LAV2_OK, NULL);
    EXPECT(lav2_session_reset((lav2_session *)engine), LAV2_ERR_INVALID_HANDLE, "session");
    EXPECT(lav2_engine_free((lav2_engine *)s), LAV2_ERR_INVALID_HANDLE, "engine");
    session_checks(engine, s, info.vocab_size);
    tokenizer_checks(engine);
    EXPECT(lav2_session_free(s), LAV2_OK, NULL);
    EXPECT(lav2_session_prefill_text(s, "x"), LAV2_ERR_INVALID_HANDLE, "freed");
    EXPECT(lav2_session_free(s), LAV2_ERR_INVALID_HANDLE, "freed");
    EXPECT(lav2_engine_free(engine), LAV2_OK, NULL);
    EXPECT(lav2_tokenize(engine, "x", 0, NULL, 0, &info.vocab_size), LAV2_ERR_INVALID_HANDLE, "freed");
    EXPECT(lav2_session_new(engine, &s), LAV2_ERR_INVALID_HANDLE, "freed");
    EXPECT(lav2_engine_free(engine), LAV2_ERR_INVALID_HANDLE, "freed");
    /* A session outlives its engine's handle. */
    EXPECT(lav2_session_prefill_ids(s2, (const uint32_t[]){1, 2}, 2), LAV2_OK, NULL);
    EXPECT(lav2_session_generate(s2, NULL, NULL, NULL, NULL), LAV2_OK, NULL);
    EXPECT(lav2_session_free(s2), LAV2_OK, NULL);
    if (argc == 3) image_checks(argv[2]);
    TRUTH(lav2_live_handles() == 0);
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0;
}
