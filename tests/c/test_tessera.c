/* Tests every function of tessera.h from C, including the error paths: NULL pointers, invalid
 * UTF-8, too-small buffers, oversized inputs. Built with -std=c11 -Wall -Wextra -Werror
 * -pedantic and linked against both libtessera.so and libtessera.a. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tt.h"

static const char BAD_UTF8[] = {'a', (char)0xff, 'b'};

/* The text of a tessera_string, and whether it contains `needle`. */
static int has(const tessera_string *s, const char *needle) {
    return s != NULL && strstr(tessera_string_ptr(s), needle) != NULL;
}

/* Whether the calling thread's last error message contains `needle`. */
static int last_error_has(const char *needle) {
    char msg[512];
    size_t len = 0;
    return tessera_last_error_message(msg, sizeof msg, &len) == TESSERA_OK &&
           strstr(msg, needle) != NULL;
}

static size_t user_count(const tessera_engine *e) {
    size_t n = (size_t)-1;
    CHECK_OK(tessera_engine_user_count(e, &n));
    return n;
}

static void test_versions_and_status(void) {
    CHECK(strcmp(tessera_version(), TESSERA_VERSION_STRING) == 0);
    CHECK(tessera_version_number() == TESSERA_VERSION_NUMBER);
    CHECK(TESSERA_VERSION_NUMBER ==
          TESSERA_VERSION_MAJOR * 1000000 + TESSERA_VERSION_MINOR * 1000 + TESSERA_VERSION_PATCH);
    CHECK(tessera_abi_version() == TESSERA_ABI_VERSION);

    CHECK(TESSERA_OK == 0);
    CHECK(strcmp(tessera_status_str(TESSERA_OK), "ok") == 0);
    CHECK(strcmp(tessera_status_str(TESSERA_USER_NOT_FOUND), "user not found") == 0);
    CHECK(strcmp(tessera_status_str(TESSERA_BUFFER_TOO_SMALL), "output buffer too small") == 0);
    CHECK(strcmp(tessera_status_str(123456u), "unknown status") == 0);
    /* The values equal the Rust ErrorKind codes (docs/ERRORS.md). */
    CHECK(TESSERA_INVALID_ARGUMENT == 1 && TESSERA_INVALID_TOKEN == 20 &&
          TESSERA_KEY_NOT_FOUND == 30 && TESSERA_INTERNAL == 99);
    CHECK(TESSERA_NULL_POINTER == 100 && TESSERA_PANIC == 103 && TESSERA_INVALID_JSON == 105);
}

static void test_last_error(tessera_engine *e) {
    char buf[256];
    size_t len = 0;
    tessera_string *u = NULL;
    /* A failure leaves a message; a success clears it. */
    CHECK_ST(tessera_user_get(e, S("nobody"), &u), TESSERA_USER_NOT_FOUND);
    CHECK(u == NULL);
    CHECK_ST(tessera_last_error_message(NULL, 0, &len), TESSERA_BUFFER_TOO_SMALL);
    CHECK(len > 0);
    /* Exactly len bytes is one short (the NUL); the message survives the failed copy. */
    CHECK_ST(tessera_last_error_message(buf, len, &len), TESSERA_BUFFER_TOO_SMALL);
    CHECK_OK(tessera_last_error_message(buf, len + 1, &len));
    CHECK(strlen(buf) == len && strstr(buf, "nobody") != NULL);
    CHECK_ST(tessera_last_error_message(buf, sizeof buf, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_last_error_message(NULL, 8, &len), TESSERA_NULL_POINTER);
    CHECK_OK(tessera_engine_user_count(e, &len));
    CHECK_OK(tessera_last_error_message(buf, sizeof buf, &len));
    CHECK(len == 0 && buf[0] == '\0');
}

static void test_engine_open(void) {
    tessera_engine *e = (tessera_engine *)0x1; /* must stay untouched on failure */
    CHECK_ST(tessera_engine_open_in_memory(NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"access_tokens_per_user\": 0}"), &e),
             TESSERA_INVALID_ARGUMENT);
    CHECK(e == (tessera_engine *)0x1);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"no_such_field\": 1}"), &e),
             TESSERA_INVALID_JSON);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{"), &e), TESSERA_INVALID_JSON);
    /* Unknown enum values and negative counts are invalid arguments (well-formed JSON); a
     * value of the wrong JSON type is malformed. */
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"user_id_policy\": \"lax\"}"), &e),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"user_id_case\": \"upper\"}"), &e),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"tags_max\": -1}"), &e),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"user_id_policy\": 1}"), &e),
             TESSERA_INVALID_JSON);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"tags_max\": \"many\"}"), &e),
             TESSERA_INVALID_JSON);
    CHECK_ST(tessera_engine_open_in_memory_with_config(BAD_UTF8, sizeof BAD_UTF8, &e),
             TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_engine_open_in_memory_with_config(NULL, 5, &e), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_open_in_memory_with_config(NULL, 0, NULL), TESSERA_NULL_POINTER);
    CHECK(e == (tessera_engine *)0x1);
    CHECK_OK(tessera_engine_open_in_memory_with_config(NULL, 0, &e));
    CHECK(e != NULL && e != (tessera_engine *)0x1);
    tessera_engine_free(e);
    e = NULL;
    CHECK_OK(tessera_engine_open_in_memory_with_config(
        S("{\"user_id_case\": \"lowercase\", \"user_id_policy\": \"strict\","
          " \"allow_id_only_login\": true}"),
        &e));
    CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"Carol\", \"nickname\": \"C\"}"), NULL));
    {
        tessera_authenticated a;
        CHECK_OK(tessera_user_authenticate(e, S("CAROL"), NULL, 0, &a));
        CHECK(strcmp(a.user_id, "carol") == 0 && a.user_id_len == 5);
        CHECK(a.method == TESSERA_AUTH_USER_ID_ONLY && a.token_id == 0);
    }
    CHECK_ST(tessera_user_create(e, S("{\"user_id\": \"da ve\", \"nickname\": \"D\"}"), NULL),
             TESSERA_INVALID_USER_ID);
    tessera_engine_free(e);
    tessera_engine_free(NULL);
}

static void test_users(tessera_engine *e) {
    tessera_string *s = NULL;
    bool created = false;
    size_t before;

    CHECK_OK(tessera_user_create(
        e,
        S("{\"user_id\": \"alice\", \"nickname\": \"Alice\", \"tags\": [\"staff\"],"
          " \"metadata\": {\"team\": \"red\"}, \"discovery_keys\": [\"alice@example.com\"]}"),
        &s));
    CHECK(has(s, "\"user_id\":\"alice\"") && has(s, "\"is_active\":true"));
    CHECK(tessera_string_len(s) == strlen(tessera_string_ptr(s)));
    tessera_string_free(s);
    s = NULL;
    CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"bob\", \"nickname\": \"Bob\"}"), NULL));
    CHECK_ST(tessera_user_create(e, S("{\"user_id\": \"bob\", \"nickname\": \"B\"}"), &s),
             TESSERA_USER_ALREADY_EXISTS);
    CHECK(s == NULL);

    /* Invalid inputs change nothing. */
    before = user_count(e);
    CHECK_ST(tessera_user_create(NULL, S("{}"), NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_create(e, NULL, 10, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_create(e, BAD_UTF8, sizeof BAD_UTF8, NULL), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_user_create(e, S("{\"user_id\": \"x\"}  trailing"), NULL),
             TESSERA_INVALID_JSON);
    CHECK(last_error_has("user_json: "));
    CHECK_ST(tessera_user_create(e, S("{\"user_id\": \"x\", \"nickname\": \"X\", \"bogus\": 1}"),
                                 NULL),
             TESSERA_INVALID_JSON);
    {
        /* One byte over the ABI's input limit fails before anything is read; the limit passes
         * the size check and fails later, on content. */
        size_t big = (size_t)TESSERA_MAX_INPUT_LEN + 1;
        char *huge = (char *)malloc(big);
        CHECK(huge != NULL);
        if (huge != NULL) {
            memset(huge, ' ', big);
            CHECK_ST(tessera_user_create(e, huge, big, NULL), TESSERA_INPUT_TOO_LARGE);
            CHECK_ST(tessera_user_create(e, huge, big - 1, NULL), TESSERA_INVALID_JSON);
            free(huge);
        }
    }
    {
        char nick[200];
        char json[300];
        memset(nick, 'n', 81);
        nick[81] = '\0';
        snprintf(json, sizeof json, "{\"user_id\": \"long\", \"nickname\": \"%s\"}", nick);
        CHECK_ST(tessera_user_create(e, S(json), NULL), TESSERA_FIELD_TOO_LONG);
        nick[80] = '\0';
        snprintf(json, sizeof json, "{\"user_id\": \"long\", \"nickname\": \"%s\"}", nick);
        CHECK_OK(tessera_user_create(e, S(json), NULL));
        CHECK_OK(tessera_user_delete(e, S("long")));
    }
    CHECK(user_count(e) == before);

    /* upsert */
    CHECK_OK(tessera_user_upsert(e, S("{\"user_id\": \"bob\", \"nickname\": \"Other\"}"),
                                 &created, &s));
    CHECK(!created && has(s, "\"nickname\":\"Bob\""));
    tessera_string_free(s);
    CHECK_OK(tessera_user_upsert(e, S("{\"user_id\": \"dave\", \"nickname\": \"Dave\"}"),
                                 &created, NULL));
    CHECK(created);
    CHECK_OK(tessera_user_upsert(e, S("{\"user_id\": \"dave\", \"nickname\": \"D\"}"), NULL,
                                 NULL));
    CHECK_ST(tessera_user_upsert(e, BAD_UTF8, 3, &created, NULL), TESSERA_INVALID_UTF8);

    /* get */
    s = NULL;
    CHECK_OK(tessera_user_get(e, S("alice"), &s));
    CHECK(has(s, "\"team\":\"red\""));
    tessera_string_free(s);
    CHECK_ST(tessera_user_get(e, S("alice"), NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_get(e, BAD_UTF8, 3, &s), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_user_get(e, NULL, 1, &s), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_get(NULL, S("alice"), &s), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_get(e, NULL, 0, &s), TESSERA_INVALID_USER_ID); /* empty id */

    /* get by handle: the "handle" of the user JSON, the `sub` of its session tokens. alice
     * was created first, bob second; handle 3 ("long") was deleted and is never reused. */
    s = NULL;
    CHECK_OK(tessera_user_get(e, S("bob"), &s));
    CHECK(has(s, "\"handle\":2"));
    tessera_string_free(s);
    s = NULL;
    CHECK_OK(tessera_user_get_by_handle(e, 1, &s));
    CHECK(has(s, "\"user_id\":\"alice\"") && has(s, "\"handle\":1"));
    tessera_string_free(s);
    s = NULL;
    CHECK_ST(tessera_user_get_by_handle(e, 3, &s), TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_user_get_by_handle(e, 0, &s), TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_user_get_by_handle(e, UINT64_MAX, &s), TESSERA_USER_NOT_FOUND);
    CHECK(s == NULL);
    CHECK_ST(tessera_user_get_by_handle(e, 1, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_get_by_handle(NULL, 1, &s), TESSERA_NULL_POINTER);

    /* update */
    s = NULL;
    CHECK_OK(tessera_user_update(e, S("alice"),
                                 S("{\"nickname\": \"Alice A.\", \"role\": \"admin\"}"), &s));
    CHECK(has(s, "\"nickname\":\"Alice A.\"") && has(s, "\"role\":\"admin\""));
    tessera_string_free(s);
    CHECK_OK(tessera_user_update(e, S("alice"), S("{\"role\": null}"), NULL));
    CHECK_ST(tessera_user_update(e, S("alice"), S("{\"nick\": \"x\"}"), NULL),
             TESSERA_INVALID_JSON);
    CHECK_ST(tessera_user_update(e, S("alice"), S("{\"email\": \"not-an-email\"}"), NULL),
             TESSERA_INVALID_FIELD);
    CHECK_ST(tessera_user_update(e, S("zed"), S("{}"), NULL), TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_user_update(e, S("alice"), BAD_UTF8, 3, NULL), TESSERA_INVALID_UTF8);

    /* find */
    s = NULL;
    CHECK_OK(tessera_user_find_by_discovery_key(e, S("alice@example.com"), &s));
    CHECK(has(s, "\"user_id\":\"alice\""));
    tessera_string_free(s);
    CHECK_ST(tessera_user_find_by_discovery_key(e, S("nobody@example.com"), &s),
             TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_user_find_by_discovery_key(e, S("alice@example.com"), NULL),
             TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_create(e, S("{\"user_id\": \"eve\", \"nickname\": \"E\","
                                      " \"discovery_keys\": [\"alice@example.com\"]}"),
                                 NULL),
             TESSERA_DISCOVERY_KEY_TAKEN);

    /* deactivate / reactivate */
    s = NULL;
    CHECK_OK(tessera_user_deactivate(e, S("bob"), &s));
    CHECK(has(s, "\"is_active\":false"));
    tessera_string_free(s);
    CHECK_OK(tessera_user_deactivate(e, S("bob"), NULL)); /* idempotent */
    s = NULL;
    CHECK_OK(tessera_user_reactivate(e, S("bob"), &s));
    CHECK(has(s, "\"is_active\":true"));
    tessera_string_free(s);
    CHECK_ST(tessera_user_reactivate(e, S("zed"), NULL), TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_user_deactivate(e, BAD_UTF8, 3, NULL), TESSERA_INVALID_UTF8);

    /* delete */
    CHECK_OK(tessera_user_delete(e, S("dave")));
    CHECK_ST(tessera_user_delete(e, S("dave")), TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_user_delete(e, NULL, 4), TESSERA_NULL_POINTER);
}

static void test_list(tessera_engine *e) {
    tessera_string *page = NULL;
    char query[256];
    const char *cursor;
    const char *end;
    int i;
    for (i = 0; i < 5; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"user_id\": \"list%d\", \"nickname\": \"L%d\"%s}", i, i,
                 i % 2 ? ", \"tags\": [\"odd\"]" : "");
        CHECK_OK(tessera_user_create(e, S(json), NULL));
    }
    CHECK_OK(tessera_user_list(e, NULL, 0, &page));
    CHECK(has(page, "\"users\":[") && has(page, "\"next_cursor\":null"));
    tessera_string_free(page);
    page = NULL;
    CHECK_OK(tessera_user_list(e, S("{\"nickname_prefix\": \"L\", \"limit\": 2}"), &page));
    CHECK(has(page, "list0") && has(page, "list1") && !has(page, "list2"));
    /* Follow the cursor. */
    cursor = strstr(tessera_string_ptr(page), "\"next_cursor\":\"");
    CHECK(cursor != NULL);
    if (cursor != NULL) {
        cursor += strlen("\"next_cursor\":\"");
        end = strchr(cursor, '"');
        snprintf(query, sizeof query, "{\"nickname_prefix\": \"L\", \"limit\": 2, \"cursor\": \"%.*s\"}",
                 (int)(end - cursor), cursor);
        tessera_string_free(page);
        page = NULL;
        CHECK_OK(tessera_user_list(e, S(query), &page));
        CHECK(has(page, "list2") && has(page, "list3") && !has(page, "list1"));
    }
    tessera_string_free(page);
    page = NULL;
    CHECK_OK(tessera_user_list(e, S("{\"tag\": \"odd\", \"limit\": 100}"), &page));
    CHECK(has(page, "list1") && has(page, "list3") && !has(page, "list2"));
    tessera_string_free(page);
    CHECK_ST(tessera_user_list(e, S("{\"limit\": 0}"), &page), TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_user_list(e, S("{\"cursor\": \"garbage\"}"), &page),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_user_list(e, S("{\"limit\": \"x\"}"), &page), TESSERA_INVALID_JSON);
    CHECK_ST(tessera_user_list(e, NULL, 0, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_user_list(e, BAD_UTF8, 3, &page), TESSERA_INVALID_UTF8);
}

static void test_devices(tessera_engine *e) {
    tessera_string *s = NULL;
    CHECK_OK(tessera_device_add(e, S("alice"),
                                S("{\"device_type\": \"ios\", \"push_token\": \"apns-1\","
                                  " \"mode\": \"sandbox\"}"),
                                &s));
    CHECK(has(s, "\"push_token\":\"apns-1\"") && has(s, "\"evicted\":null"));
    tessera_string_free(s);
    CHECK_OK(tessera_device_add(
        e, S("alice"), S("{\"device_type\": \"android\", \"push_token\": \"fcm-1\"}"), NULL));
    /* A well-formed record with an unknown enum value is an invalid argument, as the header
     * says; a value of the wrong JSON type is malformed JSON. */
    CHECK_ST(tessera_device_add(e, S("alice"), S("{\"device_type\": \"fax\", \"push_token\": \"x\"}"),
                                NULL),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_device_add(e, S("alice"),
                                S("{\"device_type\": \"web\", \"push_token\": \"x\", \"mode\": \"dev\"}"),
                                NULL),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_device_add(e, S("alice"), S("{\"device_type\": 3, \"push_token\": \"x\"}"),
                                NULL),
             TESSERA_INVALID_JSON);
    CHECK_ST(tessera_device_add(e, S("alice"), S("{\"device_type\": \"web\", \"push_token\": \"\"}"),
                                NULL),
             TESSERA_INVALID_FIELD);
    CHECK_ST(tessera_device_add(e, S("zed"), S("{\"device_type\": \"web\", \"push_token\": \"w\"}"),
                                NULL),
             TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_device_add(e, S("alice"), BAD_UTF8, 3, NULL), TESSERA_INVALID_UTF8);
    s = NULL;
    CHECK_OK(tessera_device_list(e, S("alice"), &s));
    CHECK(has(s, "apns-1") && has(s, "fcm-1"));
    tessera_string_free(s);
    CHECK_ST(tessera_device_list(e, S("alice"), NULL), TESSERA_NULL_POINTER);
    s = NULL;
    CHECK_OK(tessera_user_find_by_push_token(e, S("fcm-1"), &s));
    CHECK(has(s, "\"user_id\":\"alice\""));
    tessera_string_free(s);
    CHECK_ST(tessera_user_find_by_push_token(e, S("nope"), &s), TESSERA_DEVICE_NOT_FOUND);
    CHECK_ST(tessera_user_find_by_push_token(e, S("fcm-1"), NULL), TESSERA_NULL_POINTER);
    s = NULL;
    CHECK_OK(tessera_device_remove(e, S("alice"), S("fcm-1"), &s));
    CHECK(has(s, "\"device_type\":\"android\""));
    tessera_string_free(s);
    CHECK_ST(tessera_device_remove(e, S("alice"), S("fcm-1"), NULL), TESSERA_DEVICE_NOT_FOUND);
    CHECK_ST(tessera_device_remove(e, S("alice"), BAD_UTF8, 3, NULL), TESSERA_INVALID_UTF8);
}

static void test_profile_image(tessera_engine *e) {
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
    static const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
    tessera_string *user = NULL;
    tessera_bytes *img = NULL;
    const char *type = NULL;
    const char *url;
    char hex[65];
    CHECK_OK(tessera_profile_image_upload(e, S("alice"), png, sizeof png, &user));
    url = user != NULL ? strstr(tessera_string_ptr(user), "tessera://images/") : NULL;
    CHECK(url != NULL);
    if (url != NULL) {
        memcpy(hex, url + strlen("tessera://images/"), 64);
        hex[64] = '\0';
        CHECK_OK(tessera_profile_image_get(e, hex, 64, &img, &type));
        CHECK(tessera_bytes_len(img) == sizeof png);
        CHECK(memcmp(tessera_bytes_ptr(img), png, sizeof png) == 0);
        CHECK(type != NULL && strcmp(type, "image/png") == 0);
        tessera_bytes_free(img);
        img = NULL;
        CHECK_OK(tessera_profile_image_get(e, hex, 64, &img, NULL));
        tessera_bytes_free(img);
        CHECK_ST(tessera_profile_image_get(e, hex, 64, NULL, NULL), TESSERA_NULL_POINTER);
    }
    tessera_string_free(user);
    CHECK_ST(tessera_profile_image_upload(e, S("alice"), gif, sizeof gif, NULL),
             TESSERA_INVALID_IMAGE);
    CHECK_ST(tessera_profile_image_upload(e, S("alice"), NULL, 10, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_profile_image_upload(e, S("zed"), png, sizeof png, NULL),
             TESSERA_USER_NOT_FOUND);
    {
        /* Larger than TESSERA_MAX_INPUT_LEN is allowed through to the engine's own limit. */
        size_t big = (size_t)TESSERA_MAX_INPUT_LEN + 1;
        uint8_t *huge = (uint8_t *)calloc(big, 1);
        CHECK(huge != NULL);
        if (huge != NULL) {
            memcpy(huge, png, sizeof png);
            CHECK_ST(tessera_profile_image_upload(e, S("alice"), huge, big, NULL),
                     TESSERA_IMAGE_TOO_LARGE);
            free(huge);
        }
    }
    CHECK_ST(tessera_profile_image_get(e, S("00"), &img, NULL), TESSERA_IMAGE_NOT_FOUND);
    CHECK_ST(tessera_profile_image_get(e, BAD_UTF8, 3, &img, NULL), TESSERA_INVALID_UTF8);
    CHECK(tessera_bytes_ptr(NULL) == NULL && tessera_bytes_len(NULL) == 0);
    tessera_bytes_free(NULL);
}

static void test_access_tokens(tessera_engine *e) {
    char tok[TESSERA_ACCESS_TOKEN_LEN + 1];
    char small[TESSERA_ACCESS_TOKEN_LEN];
    size_t len = 0;
    uint64_t id = 0, id2 = 0;
    uint64_t evicted[TESSERA_ACCESS_TOKENS_PER_USER_MAX];
    size_t n_evicted = 99;
    tessera_verified_access_token v;
    tessera_string *list = NULL;
    size_t count = 0;

    CHECK_OK(tessera_access_token_issue(e, S("bob"), S("phone"), tok, sizeof tok, &len, &id,
                                        evicted, TESSERA_ACCESS_TOKENS_PER_USER_MAX, &n_evicted));
    CHECK(len == TESSERA_ACCESS_TOKEN_LEN && strlen(tok) == len && strncmp(tok, "tsat_", 5) == 0);
    CHECK(id >= 1 && n_evicted == 0);
    CHECK_OK(tessera_access_token_verify(e, tok, len, &v));
    CHECK(strcmp(v.user_id, "bob") == 0 && v.user_id_len == 3 && v.token_id == id);
    CHECK_OK(tessera_access_token_verify(e, tok, len, NULL));

    /* A too-small buffer is refused before issuing: nothing is lost, nothing is issued. */
    CHECK_OK(tessera_access_token_list(e, S("bob"), &list));
    CHECK(has(list, "\"label\":\"phone\""));
    tessera_string_free(list);
    CHECK_ST(tessera_access_token_issue(e, S("bob"), NULL, 0, small, sizeof small, &len, NULL,
                                        NULL, 0, NULL),
             TESSERA_BUFFER_TOO_SMALL);
    CHECK(len == TESSERA_ACCESS_TOKEN_LEN);
    CHECK_ST(tessera_access_token_issue(e, S("bob"), NULL, 0, NULL, 0, &len, NULL, NULL, 0, NULL),
             TESSERA_BUFFER_TOO_SMALL);
    CHECK_ST(tessera_access_token_issue(e, S("bob"), NULL, 0, tok, sizeof tok, NULL, NULL, NULL,
                                        0, NULL),
             TESSERA_NULL_POINTER);
    /* Messages name arguments as this header does. */
    CHECK(last_error_has("out_token_len is NULL"));
    CHECK_ST(tessera_access_token_issue(e, S("bob"), NULL, 0, NULL, 8, &len, NULL, NULL, 0, NULL),
             TESSERA_NULL_POINTER);
    CHECK(last_error_has("token_buf is NULL"));
    /* The evicted-ids buffer too: it must hold the most one issue can evict. */
    n_evicted = 0;
    CHECK_ST(tessera_access_token_issue(e, S("bob"), NULL, 0, tok, sizeof tok, &len, NULL,
                                        evicted, TESSERA_ACCESS_TOKENS_PER_USER_MAX - 1,
                                        &n_evicted),
             TESSERA_BUFFER_TOO_SMALL);
    CHECK(n_evicted == TESSERA_ACCESS_TOKENS_PER_USER_MAX);
    CHECK_ST(tessera_access_token_issue(e, S("bob"), NULL, 0, tok, sizeof tok, &len, NULL, NULL,
                                        1, NULL),
             TESSERA_NULL_POINTER);
    CHECK_ST(tessera_access_token_issue(e, S("bob"), BAD_UTF8, 3, tok, sizeof tok, &len, NULL,
                                        NULL, 0, NULL),
             TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_access_token_issue(e, S("zed"), NULL, 0, tok, sizeof tok, &len, NULL, NULL,
                                        0, NULL),
             TESSERA_USER_NOT_FOUND);
    count = 99;
    CHECK_OK(tessera_access_token_revoke_all(e, S("bob"), &count));
    CHECK(count == 1); /* only the first token was ever issued */

    CHECK_OK(tessera_access_token_issue(e, S("bob"), NULL, 0, tok, sizeof tok, &len, &id2, NULL,
                                        0, NULL));
    CHECK(id2 > id);
    /* Tampered, truncated, empty and non-UTF-8 tokens. */
    tok[10] = (char)(tok[10] == 'A' ? 'B' : 'A');
    CHECK_ST(tessera_access_token_verify(e, tok, len, &v), TESSERA_INVALID_TOKEN);
    CHECK_ST(tessera_access_token_verify(e, tok, len - 1, &v), TESSERA_INVALID_TOKEN);
    CHECK_ST(tessera_access_token_verify(e, NULL, 0, &v), TESSERA_INVALID_TOKEN);
    CHECK_ST(tessera_access_token_verify(e, BAD_UTF8, 3, &v), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_access_token_verify(NULL, S("tsat_x"), &v), TESSERA_NULL_POINTER);

    CHECK_OK(tessera_access_token_revoke(e, S("bob"), id2));
    CHECK_ST(tessera_access_token_revoke(e, S("bob"), id2), TESSERA_TOKEN_NOT_FOUND);
    CHECK_ST(tessera_access_token_revoke(e, BAD_UTF8, 3, id2), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_access_token_list(e, S("bob"), NULL), TESSERA_NULL_POINTER);
    CHECK_OK(tessera_access_token_revoke_all(e, S("bob"), NULL));
    CHECK_ST(tessera_access_token_revoke_all(e, S("zed"), NULL), TESSERA_USER_NOT_FOUND);
}

static void test_session_tokens(tessera_engine *e) {
    char tok[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    char small[TESSERA_SESSION_TOKEN_MAX_LEN];
    size_t len = 0;
    int64_t exp = 0;
    tessera_verified_session v;
    tessera_authenticated a;

    CHECK_OK(tessera_session_token_issue_default(e, S("alice"), tok, sizeof tok, &len, &exp));
    CHECK(len >= TESSERA_SESSION_TOKEN_MIN_LEN && len <= TESSERA_SESSION_TOKEN_MAX_LEN &&
          strlen(tok) == len);
    CHECK(exp > 0);
    CHECK_OK(tessera_session_token_verify(e, tok, len, &v));
    CHECK(strcmp(v.user_id, "alice") == 0 && v.user_id_len == 5);
    CHECK(v.expires_at_ms == exp && v.issued_at_ms > 0 && v.issued_at_ms < exp);
    CHECK(strlen(v.key_id) >= 1 && strlen(v.key_id) <= 3);
    CHECK_OK(tessera_session_token_verify(e, tok, len, NULL));

    /* authenticate with it */
    CHECK_OK(tessera_user_authenticate(e, S("alice"), tok, len, &a));
    CHECK(a.method == TESSERA_AUTH_SESSION_TOKEN && a.expires_at_ms == exp);
    CHECK(strcmp(a.user_id, "alice") == 0);
    CHECK_OK(tessera_user_authenticate(e, S("alice"), tok, len, NULL));
    CHECK_ST(tessera_user_authenticate(e, S("bob"), tok, len, &a), TESSERA_INVALID_TOKEN);
    CHECK_ST(tessera_user_authenticate(e, S("alice"), NULL, 0, &a), TESSERA_TOKEN_REQUIRED);
    CHECK_ST(tessera_user_authenticate(e, S("alice"), BAD_UTF8, 3, &a), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_user_authenticate(e, S("alice"), NULL, 3, &a), TESSERA_NULL_POINTER);
    /* With a token the answer never depends on whether the id exists. */
    CHECK_ST(tessera_user_authenticate(e, S("zed"), tok, len, &a), TESSERA_INVALID_TOKEN);
    {
        char at[TESSERA_ACCESS_TOKEN_LEN + 1];
        size_t at_len;
        uint64_t at_id;
        CHECK_OK(tessera_access_token_issue(e, S("alice"), NULL, 0, at, sizeof at, &at_len,
                                            &at_id, NULL, 0, NULL));
        CHECK_OK(tessera_user_authenticate(e, S("alice"), at, at_len, &a));
        CHECK(a.method == TESSERA_AUTH_ACCESS_TOKEN && a.token_id == at_id);
    }

    /* Buffer checked before issuing. */
    CHECK_ST(tessera_session_token_issue_default(e, S("alice"), small, sizeof small, &len, NULL),
             TESSERA_BUFFER_TOO_SMALL);
    CHECK(len == TESSERA_SESSION_TOKEN_MAX_LEN);
    CHECK_ST(tessera_session_token_issue_default(e, S("alice"), tok, sizeof tok, NULL, NULL),
             TESSERA_NULL_POINTER);
    CHECK(last_error_has("out_token_len is NULL"));
    CHECK_ST(tessera_session_token_issue(e, S("alice"), 1000, tok, sizeof tok, &len, NULL),
             TESSERA_INVALID_EXPIRY);
    CHECK_ST(tessera_session_token_issue_default(e, S("zed"), tok, sizeof tok, &len, NULL),
             TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_session_token_issue_default(e, BAD_UTF8, 3, tok, sizeof tok, &len, NULL),
             TESSERA_INVALID_UTF8);

    /* An explicit expiry is taken literally: 0 is the distant past, not "the default", and no
     * extreme value wraps into a valid-looking one. A failure writes no expiry. */
    {
        static const int64_t refused[] = {0,         -1,        -1000,         1000,
                                          INT64_MIN, INT64_MAX, INT64_MAX - 999};
        int64_t got = 42;
        int64_t d;
        size_t i;
        for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
            CHECK_ST(tessera_session_token_issue(e, S("alice"), refused[i], tok, sizeof tok, &len,
                                                 &got),
                     TESSERA_INVALID_EXPIRY);
        }
        for (d = 1; d <= 1000; d++) {
            CHECK_ST(tessera_session_token_issue(e, S("alice"), INT64_MIN + d, tok, sizeof tok,
                                                 &len, &got),
                     TESSERA_INVALID_EXPIRY);
        }
        CHECK(got == 42);
        CHECK_OK(tessera_session_token_issue(e, S("alice"), exp - 1000, tok, sizeof tok, &len,
                                             &got));
        CHECK(got == exp - 1000);
        CHECK_OK(tessera_session_token_verify(e, tok, len, &v));
        CHECK(v.expires_at_ms == exp - 1000);
        CHECK_ST(tessera_session_token_issue(NULL, S("alice"), exp, tok, sizeof tok, &len, NULL),
                 TESSERA_NULL_POINTER);
    }

    /* Tampering. */
    CHECK_OK(tessera_session_token_issue_default(e, S("alice"), tok, sizeof tok, &len, NULL));
    tok[len - 2] = (char)(tok[len - 2] == 'A' ? 'B' : 'A');
    CHECK_ST(tessera_session_token_verify(e, tok, len, &v), TESSERA_INVALID_TOKEN);
    CHECK_ST(tessera_session_token_verify(e, BAD_UTF8, 3, &v), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_session_token_verify(e, NULL, 0, &v), TESSERA_INVALID_TOKEN);
    CHECK_ST(tessera_session_token_verify(NULL, tok, len, &v), TESSERA_NULL_POINTER);

    /* Revocation of one user's sessions. */
    CHECK_OK(tessera_session_token_issue_default(e, S("alice"), tok, sizeof tok, &len, NULL));
    CHECK_OK(tessera_session_token_revoke(e, S("alice")));
    CHECK_ST(tessera_session_token_verify(e, tok, len, &v), TESSERA_TOKEN_REVOKED);
    CHECK_ST(tessera_session_token_revoke(e, S("zed")), TESSERA_USER_NOT_FOUND);
    CHECK_ST(tessera_session_token_revoke(e, BAD_UTF8, 3), TESSERA_INVALID_UTF8);

    /* Deactivation stops verification without revoking. */
    CHECK_OK(tessera_session_token_issue_default(e, S("alice"), tok, sizeof tok, &len, NULL));
    CHECK_OK(tessera_user_deactivate(e, S("alice"), NULL));
    CHECK_ST(tessera_session_token_verify(e, tok, len, &v), TESSERA_USER_DEACTIVATED);
    CHECK_OK(tessera_user_reactivate(e, S("alice"), NULL));
    CHECK_OK(tessera_session_token_verify(e, tok, len, &v));

    /* Engine-wide revocation. */
    CHECK_OK(tessera_session_token_revoke_everyone(e));
    CHECK_ST(tessera_session_token_verify(e, tok, len, &v), TESSERA_TOKEN_REVOKED);
    CHECK_ST(tessera_session_token_revoke_everyone(NULL), TESSERA_NULL_POINTER);
}

static void test_keys(tessera_engine *e) {
    tessera_string *k = NULL;
    tessera_string *list = NULL;
    char tok[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    size_t len;
    tessera_verified_session v;
    char old_kid[TESSERA_KEY_ID_BUF_SIZE];

    CHECK_OK(tessera_session_token_issue_default(e, S("alice"), tok, sizeof tok, &len, NULL));
    CHECK_OK(tessera_session_token_verify(e, tok, len, &v));
    memcpy(old_kid, v.key_id, sizeof old_kid);
    CHECK_OK(tessera_key_rotate(e, &k));
    CHECK(has(k, "\"active\":true") && has(k, "\"key_id\":\""));
    tessera_string_free(k);
    CHECK_OK(tessera_key_rotate(e, NULL));
    CHECK_OK(tessera_key_list(e, &list));
    CHECK(has(list, old_kid) && has(list, "\"active\":false"));
    tessera_string_free(list);
    CHECK_ST(tessera_key_list(e, NULL), TESSERA_NULL_POINTER);
    /* Old tokens verify until their key is retired. */
    CHECK_OK(tessera_session_token_verify(e, tok, len, &v));
    CHECK_OK(tessera_key_retire(e, old_kid, strlen(old_kid)));
    CHECK_ST(tessera_session_token_verify(e, tok, len, &v), TESSERA_TOKEN_REVOKED);
    CHECK_ST(tessera_key_retire(e, old_kid, strlen(old_kid)), TESSERA_KEY_NOT_FOUND);
    CHECK_ST(tessera_key_retire(e, S("zzzz")), TESSERA_KEY_NOT_FOUND);
    CHECK_ST(tessera_key_retire(e, BAD_UTF8, 3), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_key_rotate(NULL, NULL), TESSERA_NULL_POINTER);
    {
        /* The active key cannot be retired. */
        tessera_string *keys = NULL;
        const char *last;
        CHECK_OK(tessera_key_list(e, &keys));
        last = keys != NULL ? strstr(tessera_string_ptr(keys), "\"key_id\":\"") : NULL;
        while (last != NULL && strstr(last + 1, "\"key_id\":\"") != NULL) {
            last = strstr(last + 1, "\"key_id\":\"");
        }
        if (last != NULL) {
            const char *id = last + strlen("\"key_id\":\"");
            size_t n = (size_t)(strchr(id, '"') - id);
            CHECK_ST(tessera_key_retire(e, id, n), TESSERA_KEY_ACTIVE);
        }
        tessera_string_free(keys);
    }
}

static void test_events(tessera_engine *e) {
    tessera_string *ev = NULL;
    uint64_t dropped = 99;
    /* Everything so far queued events; take them all, then check one fresh event. */
    CHECK_OK(tessera_event_drain(e, TESSERA_EVENT_DRAIN_MAX, &ev));
    CHECK(has(ev, "\"kind\":\"sessions_revoked\"") && has(ev, "\"kind\":\"user_deleted\""));
    CHECK(has(ev, "\"kind\":\"all_sessions_revoked\"") && has(ev, "\"kind\":\"key_retired\""));
    tessera_string_free(ev);
    ev = NULL;
    CHECK_OK(tessera_event_drain(e, 10, &ev));
    CHECK(ev != NULL && strcmp(tessera_string_ptr(ev), "[]") == 0);
    tessera_string_free(ev);
    ev = NULL;
    CHECK_OK(tessera_session_token_revoke(e, S("bob")));
    CHECK_OK(tessera_event_drain(e, 1, &ev));
    CHECK(has(ev, "\"kind\":\"sessions_revoked\"") && has(ev, "\"code\":4") &&
          has(ev, "\"user_id\":\"bob\""));
    tessera_string_free(ev);
    CHECK_ST(tessera_event_drain(e, 0, &ev), TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_event_drain(e, TESSERA_EVENT_DRAIN_MAX + 1, &ev), TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_event_drain(e, 1, NULL), TESSERA_NULL_POINTER);
    CHECK_OK(tessera_event_dropped_count(e, &dropped));
    CHECK(dropped == 0);
    CHECK_ST(tessera_event_dropped_count(e, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_event_dropped_count(NULL, &dropped), TESSERA_NULL_POINTER);
}

/* ----- durable engines ------------------------------------------------------------------- */

/* Removes a directory tree (the data directories are at most two levels deep). */
static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL) {
            char child[4096];
            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) {
                continue;
            }
            snprintf(child, sizeof child, "%s/%s", path, ent->d_name);
            remove_tree(child);
        }
        closedir(d);
        (void)rmdir(path);
    } else {
        (void)unlink(path);
    }
}

/* Writes the path of the largest journal file of `dir` into `out`; 0 if there is none. */
static int largest_journal(const char *dir, char *out, size_t cap) {
    DIR *d = opendir(dir);
    off_t best = -1;
    struct dirent *ent;
    if (d == NULL) {
        return 0;
    }
    while ((ent = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        if (strncmp(ent->d_name, "journal-", 8) != 0) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        if (stat(path, &st) == 0 && st.st_size > best) {
            best = st.st_size;
            snprintf(out, cap, "%s", path);
        }
    }
    closedir(d);
    return best > 0;
}

/* Flips a payload byte of the second group-commit batch of a format-2 journal (a batch that
 * was synced: the journal goes on after it), so open must call it damage, not a torn tail.
 * Returns 0 unless the journal has at least three batches. */
static int flip_synced_batch_byte(const char *path) {
    int fd = open(path, O_RDWR);
    unsigned char hdr[40], b;
    off_t at = 40, second = 0; /* file header 24 + prelude 16 */
    int batches = 0, ok = 0;
    if (fd < 0) {
        return 0;
    }
    while (pread(fd, hdr, sizeof hdr, at) == (ssize_t)sizeof hdr && memcmp(hdr, "TSBT", 4) == 0) {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) {
            len = (len << 8) | hdr[16 + i];
        }
        if (++batches == 2) {
            second = at;
        }
        at += (off_t)sizeof hdr + (off_t)len;
    }
    if (batches >= 3 && pread(fd, &b, 1, second + 40 + 2) == 1) {
        b ^= 0x5a;
        ok = pwrite(fd, &b, 1, second + 40 + 2) == 1;
    }
    close(fd);
    return ok;
}

/* Appends `len` bytes to `path`: what a crash during an unsynced write leaves (a torn tail). */
static int append_bytes(const char *path, const void *bytes, size_t len) {
    int fd = open(path, O_WRONLY | O_APPEND);
    int ok;
    if (fd < 0) {
        return 0;
    }
    ok = write(fd, bytes, len) == (ssize_t)len;
    close(fd);
    return ok;
}

/* The id of the key that signed a fresh token of `user`. */
static void active_key_id(tessera_engine *e, const char *user, char kid[TESSERA_KEY_ID_BUF_SIZE]) {
    char tok[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    size_t len = 0;
    tessera_verified_session v;
    kid[0] = '\0';
    CHECK_OK(tessera_session_token_issue_default(e, user, strlen(user), tok, sizeof tok, &len, NULL));
    CHECK_OK(tessera_session_token_verify(e, tok, len, &v));
    memcpy(kid, v.key_id, TESSERA_KEY_ID_BUF_SIZE);
}

static void test_durable(void) {
    char root[] = "/tmp/tessera-c-test-XXXXXX";
    char dir[256];
    char missing[256];
    char journal[4096];
    char tok[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    char at[TESSERA_ACCESS_TOKEN_LEN + 1];
    char kid[TESSERA_KEY_ID_BUF_SIZE];
    uint8_t key[TESSERA_KEY_SECRET_LEN];
    uint8_t key_again[TESSERA_KEY_SECRET_LEN];
    uint8_t untouched[TESSERA_KEY_SECRET_LEN];
    size_t tok_len = 0, at_len = 0, i;
    tessera_engine *e = NULL;
    tessera_engine *other = (tessera_engine *)0x1;
    tessera_string *s = NULL;
    tessera_string *damage = (tessera_string *)0x1;
    tessera_verified_session v;
    tessera_verified_access_token va;

    if (mkdtemp(root) == NULL) {
        CHECK(!"mkdtemp failed");
        return;
    }
    snprintf(dir, sizeof dir, "%s/data", root);
    snprintf(missing, sizeof missing, "%s/missing", root);

    /* Bad arguments change nothing and create nothing. */
    CHECK_ST(tessera_engine_open(S(dir), NULL, 0, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_open(NULL, 5, NULL, 0, &other), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_open(NULL, 0, NULL, 0, &other), TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open(BAD_UTF8, sizeof BAD_UTF8, NULL, 0, &other),
             TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_engine_open(S(dir), S("{\"sync_mode\": \"sometimes\"}"), &other),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open(S(dir), S("{\"sync_mode\": 1}"), &other), TESSERA_INVALID_JSON);
    CHECK_ST(tessera_engine_open(S(dir), S("{\"sync_mode\": {\"relaxed_ms\": 0}}"), &other),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open(S(dir), S("{\"access_tokens_per_user\": 0}"), &other),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open(S(dir), BAD_UTF8, sizeof BAD_UTF8, &other),
             TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_engine_open_in_memory_with_config(
                 S("{\"sync_mode\": {\"relaxed_ms\": 10}}"), &other),
             TESSERA_INVALID_ARGUMENT);
    CHECK(other == (tessera_engine *)0x1);
    CHECK(access(dir, F_OK) != 0);

    /* Open, write, free. */
    CHECK_OK(tessera_engine_open(S(dir), S("{\"sync_mode\": \"durable\"}"), &e));
    if (e == NULL) {
        remove_tree(root);
        return;
    }
    CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"dora\", \"nickname\": \"Dora\"}"), NULL));
    CHECK_OK(tessera_access_token_issue(e, S("dora"), S("laptop"), at, sizeof at, &at_len, NULL,
                                        NULL, 0, NULL));
    CHECK_OK(tessera_session_token_issue_default(e, S("dora"), tok, sizeof tok, &tok_len, NULL));
    CHECK_OK(tessera_engine_store_stats(e, &s));
    CHECK(has(s, "\"records_synced\":") && has(s, "\"syncs\":") && has(s, "\"bytes_written\":"));
    CHECK(!has(s, "\"records_synced\":0"));
    tessera_string_free(s);
    s = NULL;
    CHECK_ST(tessera_engine_store_stats(e, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_store_stats(NULL, &s), TESSERA_NULL_POINTER);
    CHECK(s == NULL);

    /* One read-write engine per directory: a second open, or a salvage open, is refused. */
    CHECK_ST(tessera_engine_open(S(dir), NULL, 0, &other), TESSERA_LOCKED);
    CHECK_ST(tessera_engine_open_salvage(S(dir), NULL, 0, &other, &damage), TESSERA_LOCKED);
    CHECK(other == (tessera_engine *)0x1 && damage == (tessera_string *)0x1);

    /* Key export: the secret of a live key, and every error path leaves the buffer alone. */
    active_key_id(e, "dora", kid);
    memset(untouched, 0xAA, sizeof untouched);
    memcpy(key, untouched, sizeof key);
    CHECK_OK(tessera_key_export(e, kid, strlen(kid), key));
    CHECK(memcmp(key, untouched, sizeof key) != 0);
    CHECK_OK(tessera_key_export(e, kid, strlen(kid), key_again));
    CHECK(memcmp(key, key_again, sizeof key) == 0);
    memcpy(key_again, untouched, sizeof key_again);
    CHECK_ST(tessera_key_export(e, S("zzz"), key_again), TESSERA_KEY_NOT_FOUND);
    CHECK_ST(tessera_key_export(e, S("not a key id"), key_again), TESSERA_KEY_NOT_FOUND);
    CHECK_ST(tessera_key_export(e, NULL, 0, key_again), TESSERA_KEY_NOT_FOUND);
    CHECK_ST(tessera_key_export(e, BAD_UTF8, sizeof BAD_UTF8, key_again), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_key_export(e, NULL, 3, key_again), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_key_export(e, kid, strlen(kid), NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_key_export(NULL, kid, strlen(kid), key_again), TESSERA_NULL_POINTER);
    CHECK(memcmp(key_again, untouched, sizeof key_again) == 0);
    {
        /* The last error message never holds the secret (it holds nothing after a success). */
        char msg[256];
        size_t len = 0;
        CHECK_OK(tessera_key_export(e, kid, strlen(kid), key_again));
        CHECK_OK(tessera_last_error_message(msg, sizeof msg, &len));
        CHECK(len == 0);
    }

    CHECK_OK(tessera_engine_compact(e));
    CHECK_ST(tessera_engine_compact(NULL), TESSERA_NULL_POINTER);
    tessera_engine_free(e);
    e = NULL;

    /* Reopen (relaxed sync this time): users, tokens and keys are all still there. */
    CHECK_OK(tessera_engine_open(S(dir), S("{\"sync_mode\": {\"relaxed_ms\": 5}}"), &e));
    if (e == NULL) {
        remove_tree(root);
        return;
    }
    CHECK(user_count(e) == 1);
    CHECK_OK(tessera_user_get(e, S("dora"), &s));
    CHECK(has(s, "\"nickname\":\"Dora\""));
    tessera_string_free(s);
    s = NULL;
    CHECK_OK(tessera_access_token_verify(e, at, at_len, &va));
    CHECK(strcmp(va.user_id, "dora") == 0);
    CHECK_OK(tessera_session_token_verify(e, tok, tok_len, &v));
    CHECK(strcmp(v.user_id, "dora") == 0 && strcmp(v.key_id, kid) == 0);
    CHECK_OK(tessera_key_export(e, kid, strlen(kid), key_again));
    CHECK(memcmp(key, key_again, sizeof key) == 0);
    for (i = 0; i < 4; i++) {
        char json[200];
        snprintf(json, sizeof json,
                 "{\"user_id\": \"later%u\", \"nickname\": \"a nickname long enough to give the "
                 "journal some bytes\"}",
                 (unsigned)i);
        CHECK_OK(tessera_user_create(e, S(json), NULL));
    }
    tessera_engine_free(e);
    e = NULL;

    /* Salvage of an intact directory: no damage, everything readable, nothing writable. */
    CHECK_OK(tessera_engine_open_salvage(S(dir), NULL, 0, &e, &damage));
    CHECK(damage == NULL);
    if (e != NULL) {
        tessera_engine *second = NULL;
        CHECK(user_count(e) == 5);
        CHECK_OK(tessera_session_token_verify(e, tok, tok_len, &v));
        CHECK_OK(tessera_key_export(e, kid, strlen(kid), key_again));
        CHECK(memcmp(key, key_again, sizeof key) == 0);
        CHECK_ST(tessera_user_create(e, S("{\"user_id\": \"eve\", \"nickname\": \"E\"}"), NULL),
                 TESSERA_READ_ONLY);
        CHECK_ST(tessera_session_token_revoke(e, S("dora")), TESSERA_READ_ONLY);
        CHECK_ST(tessera_key_rotate(e, NULL), TESSERA_READ_ONLY);
        CHECK_ST(tessera_engine_compact(e), TESSERA_READ_ONLY);
        CHECK(user_count(e) == 5);
        /* Readers coexist; a writer does not. */
        CHECK_OK(tessera_engine_open_salvage(S(dir), NULL, 0, &second, NULL));
        tessera_engine_free(second);
        CHECK_ST(tessera_engine_open(S(dir), NULL, 0, &other), TESSERA_LOCKED);
        CHECK(other == (tessera_engine *)0x1);
        tessera_engine_free(e);
        e = NULL;
    }
    CHECK_ST(tessera_engine_open_salvage(S(missing), NULL, 0, &other, NULL), TESSERA_IO);
    CHECK(access(missing, F_OK) != 0);
    CHECK_ST(tessera_engine_open_salvage(BAD_UTF8, sizeof BAD_UTF8, NULL, 0, &other, NULL),
             TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_engine_open_salvage(NULL, 7, NULL, 0, &other, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_open_salvage(S(dir), NULL, 0, NULL, NULL), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_open_salvage(S(dir), S("{\"bogus\": 1}"), &other, NULL),
             TESSERA_INVALID_JSON);
    CHECK(other == (tessera_engine *)0x1);

    /* A torn tail: open cuts it, reports its size in the stats and queues an event once. */
    CHECK(largest_journal(dir, journal, sizeof journal));
    CHECK(append_bytes(journal, "\x05\x00\x00", 3));
    CHECK_OK(tessera_engine_open(S(dir), NULL, 0, &e));
    if (e != NULL) {
        CHECK(user_count(e) == 5);
        CHECK_OK(tessera_engine_store_stats(e, &s));
        CHECK(has(s, "\"torn_tail_bytes\":3") && has(s, "\"torn_tail_records\":1"));
        tessera_string_free(s);
        CHECK_OK(tessera_event_drain(e, 10, &s));
        CHECK(has(s, "\"kind\":\"store_torn_tail\"") && has(s, "\"code\":9"));
        tessera_string_free(s);
        tessera_engine_free(e);
    }
    CHECK_OK(tessera_engine_open(S(dir), NULL, 0, &e));
    if (e != NULL) {
        CHECK_OK(tessera_engine_store_stats(e, &s));
        CHECK(has(s, "\"torn_tail_bytes\":0") && has(s, "\"torn_tail_records\":0"));
        tessera_string_free(s);
        CHECK_OK(tessera_event_drain(e, 10, &s));
        CHECK(has(s, "[]"));
        tessera_string_free(s);
        tessera_engine_free(e);
    }
    e = NULL;
    s = NULL;

    /* Damage to a synced batch of a journal: open refuses, salvage loads what precedes it.
     * Three more writes first, each its own synced batch, so the damaged one is not the last. */
    CHECK_OK(tessera_engine_open(S(dir), NULL, 0, &e));
    if (e != NULL) {
        CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"x1\"}"), NULL));
        CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"x2\"}"), NULL));
        CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"x3\"}"), NULL));
        tessera_engine_free(e);
        e = NULL;
    }
    CHECK(largest_journal(dir, journal, sizeof journal));
    CHECK(flip_synced_batch_byte(journal));
    CHECK_ST(tessera_engine_open(S(dir), NULL, 0, &other), TESSERA_CORRUPT);
    CHECK(other == (tessera_engine *)0x1);
    damage = NULL;
    CHECK_OK(tessera_engine_open_salvage(S(dir), NULL, 0, &e, &damage));
    CHECK(has(damage, "\"code\":51") && has(damage, "\"message\":\""));
    tessera_string_free(damage);
    if (e != NULL) {
        /* Everything before the damaged batch (the 5 users), nothing from it or after it. */
        CHECK(user_count(e) == 5);
        tessera_engine_free(e);
    }

    /* An in-memory engine: compaction does nothing, the counters are zero. */
    CHECK_OK(tessera_engine_open_in_memory(&e));
    CHECK_OK(tessera_engine_compact(e));
    CHECK_OK(tessera_engine_store_stats(e, &s));
    CHECK(has(s, "{\"records_synced\":0,") || has(s, "\"records_synced\":0"));
    tessera_string_free(s);
    tessera_engine_free(e);

    remove_tree(root);
    CHECK(access(root, F_OK) != 0);
}

/* Creates the file `path` holding `text`. */
static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    int ok;
    if (f == NULL) {
        return 0;
    }
    ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* Whether the directory `path` exists and holds exactly `n` entries. */
static int entries_are(const char *path, int n) {
    DIR *d = opendir(path);
    struct dirent *ent;
    int count = 0;
    if (d == NULL) {
        return 0;
    }
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) {
            count++;
        }
    }
    closedir(d);
    return count == n;
}

/* tessera_engine_backup_to: a live durable engine and an in-memory one, copied into data
 * directories that open with their users, tokens, keys and images; bad targets refused with
 * nothing changed. */
static void test_backup(void) {
    char root[] = "/tmp/tessera-c-backup-XXXXXX";
    char dir[256], b1[256], b2[256], b3[256], file[256], full[256], full_x[256];
    char tok[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    size_t tok_len = 0;
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                        'I',  'H', 'D', 'R', 1,    2,    3,    4};
    tessera_engine *e = NULL;
    tessera_engine *copy = NULL;
    tessera_string *stats = (tessera_string *)0x1;
    tessera_string *u = NULL;
    tessera_verified_session v;

    if (mkdtemp(root) == NULL) {
        CHECK(!"mkdtemp failed");
        return;
    }
    snprintf(dir, sizeof dir, "%s/data", root);
    snprintf(b1, sizeof b1, "%s/b1", root);
    snprintf(b2, sizeof b2, "%s/more/b2", root);
    snprintf(b3, sizeof b3, "%s/b3", root);
    snprintf(file, sizeof file, "%s/file", root);
    snprintf(full, sizeof full, "%s/full", root);
    snprintf(full_x, sizeof full_x, "%s/full/x", root);
    CHECK_OK(tessera_engine_open(S(dir), NULL, 0, &e));
    if (e == NULL) {
        remove_tree(root);
        return;
    }
    CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"ann\", \"nickname\": \"Ann\"}"), NULL));
    CHECK_OK(tessera_profile_image_upload(e, S("ann"), png, sizeof png, NULL));
    CHECK_OK(tessera_session_token_issue_default(e, S("ann"), tok, sizeof tok, &tok_len, NULL));

    /* Bad arguments: nothing is written, out_stats untouched. */
    CHECK_ST(tessera_engine_backup_to(NULL, S(b1), &stats), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_backup_to(e, NULL, 4, &stats), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_backup_to(e, NULL, 0, &stats), TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_backup_to(e, BAD_UTF8, sizeof BAD_UTF8, &stats), TESSERA_INVALID_UTF8);
    CHECK_ST(tessera_engine_backup_to(e, dir, strlen(dir) + 1, &stats), TESSERA_INVALID_ARGUMENT);
    CHECK(last_error_has("NUL"));
    {
        size_t big = (size_t)TESSERA_MAX_INPUT_LEN + 1;
        char *huge = (char *)malloc(big);
        CHECK(huge != NULL);
        if (huge != NULL) {
            memset(huge, 'a', big);
            CHECK_ST(tessera_engine_backup_to(e, huge, big, &stats), TESSERA_INPUT_TOO_LARGE);
            /* At the limit the path passes the ABI and the file system refuses it. */
            CHECK_ST(tessera_engine_backup_to(e, huge, big - 1, &stats), TESSERA_IO);
            free(huge);
        }
    }
    /* The engine's own directory, a file, a directory with something in it: refused, left
     * as they were. */
    CHECK(write_file(file, "mine") && mkdir(full, 0700) == 0 && write_file(full_x, "mine"));
    CHECK_ST(tessera_engine_backup_to(e, S(dir), &stats), TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_backup_to(e, S(file), &stats), TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_backup_to(e, S(full), &stats), TESSERA_INVALID_ARGUMENT);
    CHECK(last_error_has("not an empty directory"));
    CHECK(stats == (tessera_string *)0x1);
    CHECK(entries_are(root, 3) && entries_are(full, 1));

    /* A live engine, with stats; an empty directory target, without. */
    CHECK_OK(tessera_engine_backup_to(e, S(b1), &stats));
    CHECK(has(stats, "\"users\":1") && has(stats, "\"files\":") && has(stats, "\"bytes\":"));
    tessera_string_free(stats);
    CHECK(mkdir(b3, 0700) == 0);
    CHECK_OK(tessera_engine_backup_to(e, S(b3), NULL));
    CHECK_ST(tessera_engine_backup_to(e, S(b3), NULL), TESSERA_INVALID_ARGUMENT);
    tessera_engine_free(e);
    e = NULL;

    /* An in-memory engine backs up into a data directory too (parents created). */
    CHECK_OK(tessera_engine_open_in_memory(&e));
    if (e != NULL) {
        CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"bo\", \"nickname\": \"Bo\"}"), NULL));
        stats = NULL;
        CHECK_OK(tessera_engine_backup_to(e, S(b2), &stats));
        CHECK(has(stats, "\"users\":1"));
        tessera_string_free(stats);
        tessera_engine_free(e);
    }

    /* Each copy opens as a data directory with what was backed up. */
    CHECK_OK(tessera_engine_open(S(b1), NULL, 0, &copy));
    if (copy != NULL) {
        CHECK(user_count(copy) == 1);
        CHECK_OK(tessera_session_token_verify(copy, tok, tok_len, &v));
        CHECK(strcmp(v.user_id, "ann") == 0);
        CHECK_OK(tessera_user_get(copy, S("ann"), &u));
        /* The image came along: its address is the 64 hex digits after "images/". */
        if (has(u, "images/")) {
            tessera_bytes *img = NULL;
            const char *hex = strstr(tessera_string_ptr(u), "images/") + 7;
            CHECK_OK(tessera_profile_image_get(copy, hex, 64, &img, NULL));
            CHECK(img != NULL && tessera_bytes_len(img) == sizeof png &&
                  memcmp(tessera_bytes_ptr(img), png, sizeof png) == 0);
            tessera_bytes_free(img);
        } else {
            CHECK(!"no profile image in the copy");
        }
        tessera_string_free(u);
        tessera_engine_free(copy);
    }
    copy = NULL;
    CHECK_OK(tessera_engine_open(S(b3), NULL, 0, &copy));
    CHECK(copy != NULL && user_count(copy) == 1);
    tessera_engine_free(copy);
    copy = NULL;
    CHECK_OK(tessera_engine_open(S(b2), NULL, 0, &copy));
    if (copy != NULL) {
        CHECK_OK(tessera_user_get(copy, S("bo"), &u));
        CHECK(has(u, "\"nickname\":\"Bo\""));
        tessera_string_free(u);
        tessera_engine_free(copy);
    }
    remove_tree(root);
}

/* Opens an in-memory engine with `{"<field>": value}`; returns the status. */
static tessera_status open_with(const char *field, unsigned long value, tessera_engine **e) {
    char json[128];
    snprintf(json, sizeof json, "{\"%s\": %lu}", field, value);
    return tessera_engine_open_in_memory_with_config(S(json), e);
}

/* The limits of tessera.h hold at their edges: the maximum passes, one more fails. */
static void test_limits(void) {
    tessera_engine *e = NULL;
    char id[TESSERA_USER_ID_MAX_CHARS + 2];
    char json[TESSERA_USER_ID_MAX_CHARS + 64];
    char tok[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    size_t len = 0;

    CHECK(TESSERA_USER_ID_BUF_SIZE == TESSERA_USER_ID_MAX_CHARS * 4 + 1);
    CHECK(TESSERA_ACCESS_TOKENS_PER_USER_DEFAULT >= 1 &&
          TESSERA_ACCESS_TOKENS_PER_USER_DEFAULT <= TESSERA_ACCESS_TOKENS_PER_USER_MAX);
    CHECK(TESSERA_SESSION_TOKEN_MIN_LEN <= TESSERA_SESSION_TOKEN_MAX_LEN);
    CHECK(TESSERA_SESSION_EPOCH_MAX >= 1);

    CHECK_ST(open_with("access_tokens_per_user", TESSERA_ACCESS_TOKENS_PER_USER_MAX + 1, &e),
             TESSERA_INVALID_ARGUMENT);
    CHECK(e == NULL);
    CHECK_OK(open_with("access_tokens_per_user", TESSERA_ACCESS_TOKENS_PER_USER_MAX, &e));
    tessera_engine_free(e);
    e = NULL;
    CHECK_ST(open_with("user_id_max_chars", TESSERA_USER_ID_MAX_CHARS + 1, &e),
             TESSERA_INVALID_ARGUMENT);
    CHECK(e == NULL);
    CHECK_OK(open_with("user_id_max_chars", TESSERA_USER_ID_MAX_CHARS, &e));
    if (e == NULL) {
        return;
    }
    memset(id, 'u', sizeof id);
    id[TESSERA_USER_ID_MAX_CHARS + 1] = '\0';
    snprintf(json, sizeof json, "{\"user_id\": \"%s\"}", id);
    CHECK_ST(tessera_user_create(e, S(json), NULL), TESSERA_INVALID_USER_ID);
    id[TESSERA_USER_ID_MAX_CHARS] = '\0';
    snprintf(json, sizeof json, "{\"user_id\": \"%s\"}", id);
    CHECK_OK(tessera_user_create(e, S(json), NULL));
    CHECK_OK(tessera_session_token_issue_default(e, S(id), tok, sizeof tok, &len, NULL));
    CHECK(len >= TESSERA_SESSION_TOKEN_MIN_LEN && len <= TESSERA_SESSION_TOKEN_MAX_LEN);
    tessera_engine_free(e);
}

/* Lowering access_tokens_per_user takes effect at the next issue: every token beyond the limit
 * is evicted, oldest first, each one reported and with its own event. */
static void test_lowered_access_token_limit(void) {
    char root[] = "/tmp/tessera-c-limit-XXXXXX";
    char dir[256];
    char toks[5][TESSERA_ACCESS_TOKEN_LEN + 1];
    char fresh[TESSERA_ACCESS_TOKEN_LEN + 1];
    char needle[64];
    size_t lens[5], fresh_len = 0, n = 99, i;
    uint64_t ids[5], fresh_id = 0, evicted[TESSERA_ACCESS_TOKENS_PER_USER_MAX];
    tessera_engine *e = NULL;
    tessera_string *ev = NULL;
    const char *p;

    if (mkdtemp(root) == NULL) {
        CHECK(!"mkdtemp failed");
        return;
    }
    snprintf(dir, sizeof dir, "%s/data", root);
    CHECK_OK(tessera_engine_open(S(dir), S("{\"access_tokens_per_user\": 5}"), &e));
    if (e == NULL) {
        remove_tree(root);
        return;
    }
    CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"u\"}"), NULL));
    for (i = 0; i < 5; i++) {
        CHECK_OK(tessera_access_token_issue(e, S("u"), NULL, 0, toks[i], sizeof toks[i], &lens[i],
                                            &ids[i], NULL, 0, &n));
        CHECK(n == 0);
    }
    tessera_engine_free(e);
    e = NULL;

    CHECK_OK(tessera_engine_open(S(dir), S("{\"access_tokens_per_user\": 2}"), &e));
    if (e == NULL) {
        remove_tree(root);
        return;
    }
    CHECK_OK(tessera_access_token_issue(e, S("u"), NULL, 0, fresh, sizeof fresh, &fresh_len,
                                        &fresh_id, evicted, TESSERA_ACCESS_TOKENS_PER_USER_MAX,
                                        &n));
    CHECK(n == 4);
    for (i = 0; i < 4 && i < n; i++) {
        CHECK(evicted[i] == ids[i]);
        CHECK_ST(tessera_access_token_verify(e, toks[i], lens[i], NULL), TESSERA_INVALID_TOKEN);
    }
    CHECK_OK(tessera_access_token_verify(e, toks[4], lens[4], NULL));
    CHECK_OK(tessera_access_token_verify(e, fresh, fresh_len, NULL));
    /* One access_token_evicted event per evicted token, oldest first, and nothing else. */
    CHECK_OK(tessera_event_drain(e, 100, &ev));
    p = ev != NULL ? tessera_string_ptr(ev) : "";
    for (i = 0; i < 4; i++) {
        snprintf(needle, sizeof needle, "\"token_id\":%llu,", (unsigned long long)ids[i]);
        p = strstr(p, needle);
        CHECK(p != NULL);
        if (p == NULL) {
            break;
        }
    }
    CHECK(p != NULL && strstr(p + 1, "\"seq\"") == NULL);
    for (i = 0, p = ev != NULL ? tessera_string_ptr(ev) : ""; (p = strstr(p, "\"kind\":")) != NULL;
         i++, p++) {
        static const char kind[] = "\"kind\":\"access_token_evicted\"";
        CHECK(strncmp(p, kind, sizeof kind - 1) == 0);
    }
    CHECK(i == 4);
    tessera_string_free(ev);
    tessera_engine_free(e);
    remove_tree(root);
}

/* docs/ERRORS.md, "One failure, one error kind": each way a token can fail gets one status from
 * verify and from authenticate - for its own user "a", another user "b", and an id nobody
 * has (a token never reveals whether an id exists). Each case runs on a fresh engine. The
 * expiry cases need a manual clock and are in tests/engine.rs. */
enum token_case {
    SESSION_VALID,
    SESSION_GARBAGE,
    SESSION_TAMPERED,
    SESSION_FOREIGN_KEY,
    SESSION_KID_NEVER_ISSUED,
    SESSION_REVOKED,
    SESSION_KEY_RETIRED,
    SESSION_EVERYONE_REVOKED,
    SESSION_USER_DELETED,
    SESSION_ID_RECREATED,
    SESSION_DEACTIVATED,
    SESSION_REVOKED_AND_DEACTIVATED,
    ACCESS_VALID,
    ACCESS_REVOKED,
    ACCESS_ID_RECREATED,
    ACCESS_DEACTIVATED,
    TOKEN_CASES
};

static const struct {
    const char *name;
    tessera_status want;
} token_cases[TOKEN_CASES] = {
    {"session, valid", TESSERA_OK},
    {"session, garbage", TESSERA_INVALID_TOKEN},
    {"session, tampered signature", TESSERA_INVALID_TOKEN},
    {"session, another engine's key", TESSERA_INVALID_TOKEN},
    {"session, key id never issued", TESSERA_INVALID_TOKEN},
    {"session, sessions revoked", TESSERA_TOKEN_REVOKED},
    {"session, key retired", TESSERA_TOKEN_REVOKED},
    {"session, everyone revoked", TESSERA_TOKEN_REVOKED},
    {"session, user deleted", TESSERA_TOKEN_REVOKED},
    {"session, user deleted and id re-created", TESSERA_TOKEN_REVOKED},
    {"session, user deactivated", TESSERA_USER_DEACTIVATED},
    {"session, revoked and deactivated", TESSERA_TOKEN_REVOKED},
    {"access, valid", TESSERA_OK},
    {"access, revoked", TESSERA_INVALID_TOKEN},
    {"access, user deleted and id re-created", TESSERA_INVALID_TOKEN},
    {"access, user deactivated", TESSERA_USER_DEACTIVATED},
};

/* A session token of user "a" from a fresh engine that has rotated `rotations` times. */
static size_t foreign_session(int rotations, char *tok, size_t cap) {
    tessera_engine *f = NULL;
    size_t len = 0;
    int i;
    CHECK_OK(tessera_engine_open_in_memory(&f));
    CHECK_OK(tessera_user_create(f, S("{\"user_id\": \"a\"}"), NULL));
    for (i = 0; i < rotations; i++) {
        CHECK_OK(tessera_key_rotate(f, NULL));
    }
    CHECK_OK(tessera_session_token_issue_default(f, S("a"), tok, cap, &len, NULL));
    tessera_engine_free(f);
    return len;
}

static void test_token_error_table(void) {
    int c;
    for (c = 0; c < TOKEN_CASES; c++) {
        tessera_engine *e = NULL;
        char tok[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
        size_t len = 0;
        int access_token = c >= ACCESS_VALID;
        tessera_status want = token_cases[c].want;
        tessera_status got;
        const char *others[] = {"b", "nobody"};
        size_t o;

        CHECK_OK(tessera_engine_open_in_memory(&e));
        CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"a\"}"), NULL));
        CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"b\"}"), NULL));
        if (access_token) {
            CHECK_OK(tessera_access_token_issue(e, S("a"), NULL, 0, tok, sizeof tok, &len, NULL,
                                                NULL, 0, NULL));
        } else {
            CHECK_OK(tessera_session_token_issue_default(e, S("a"), tok, sizeof tok, &len, NULL));
        }
        switch ((enum token_case)c) {
        case SESSION_GARBAGE:
            len = (size_t)snprintf(tok, sizeof tok, "garbage");
            break;
        case SESSION_TAMPERED:
            tok[len - 1] = (char)(tok[len - 1] == 'A' ? 'B' : 'A');
            break;
        case SESSION_FOREIGN_KEY:
            len = foreign_session(0, tok, sizeof tok);
            break;
        case SESSION_KID_NEVER_ISSUED:
            len = foreign_session(4, tok, sizeof tok);
            break;
        case SESSION_REVOKED:
            CHECK_OK(tessera_session_token_revoke(e, S("a")));
            break;
        case SESSION_KEY_RETIRED:
            CHECK_OK(tessera_key_rotate(e, NULL));
            CHECK_OK(tessera_key_retire(e, S("1")));
            break;
        case SESSION_EVERYONE_REVOKED:
            CHECK_OK(tessera_session_token_revoke_everyone(e));
            break;
        case SESSION_USER_DELETED:
            CHECK_OK(tessera_user_delete(e, S("a")));
            break;
        case SESSION_ID_RECREATED:
        case ACCESS_ID_RECREATED:
            CHECK_OK(tessera_user_delete(e, S("a")));
            CHECK_OK(tessera_user_create(e, S("{\"user_id\": \"a\"}"), NULL));
            break;
        case SESSION_DEACTIVATED:
        case ACCESS_DEACTIVATED:
            CHECK_OK(tessera_user_deactivate(e, S("a"), NULL));
            break;
        case SESSION_REVOKED_AND_DEACTIVATED:
            CHECK_OK(tessera_session_token_revoke(e, S("a")));
            CHECK_OK(tessera_user_deactivate(e, S("a"), NULL));
            break;
        case ACCESS_REVOKED:
            CHECK_OK(tessera_access_token_revoke_all(e, S("a"), NULL));
            break;
        case SESSION_VALID:
        case ACCESS_VALID:
        case TOKEN_CASES:
            break;
        }

        got = access_token ? tessera_access_token_verify(e, tok, len, NULL)
                           : tessera_session_token_verify(e, tok, len, NULL);
        CHECK(got == want);
        if (got != want) {
            fprintf(stderr, "  case \"%s\": verify returned %s\n", token_cases[c].name,
                    tessera_status_str(got));
        }
        got = tessera_user_authenticate(e, S("a"), tok, len, NULL);
        CHECK(got == want);
        if (got != want) {
            fprintf(stderr, "  case \"%s\": authenticate a returned %s\n", token_cases[c].name,
                    tessera_status_str(got));
        }
        for (o = 0; o < sizeof others / sizeof others[0]; o++) {
            tessera_status other_want = want == TESSERA_OK ? TESSERA_INVALID_TOKEN : want;
            got = tessera_user_authenticate(e, S(others[o]), tok, len, NULL);
            CHECK(got == other_want);
            if (got != other_want) {
                fprintf(stderr, "  case \"%s\": authenticate %s returned %s\n",
                        token_cases[c].name, others[o], tessera_status_str(got));
            }
        }
        tessera_engine_free(e);
    }
}

static void test_owned_objects(void) {
    CHECK(tessera_string_ptr(NULL) == NULL);
    CHECK(tessera_string_len(NULL) == 0);
    tessera_string_free(NULL);
    CHECK_ST(tessera_engine_user_count(NULL, NULL), TESSERA_NULL_POINTER);
}

/* Cluster mode: argument checks always; with TESSERA_PG_DSN (scripts/with-postgres.sh), two
 * nodes on one database: a user created on one appears on the other, and a session revoked on
 * one is refused by the other, which raises the revocation event too. */
static int poll_status(tessera_status (*call)(tessera_engine *, const char *), tessera_engine *e,
                       const char *arg, tessera_status want) {
    for (int i = 0; i < 400; i++) { /* up to 2 s */
        if (call(e, arg) == want) {
            return 1;
        }
        struct timespec pause = {0, 5000000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

static tessera_status get_user(tessera_engine *e, const char *id) {
    tessera_string *u = NULL;
    tessera_status st = tessera_user_get(e, id, strlen(id), &u);
    tessera_string_free(u);
    return st;
}

static tessera_status verify_session(tessera_engine *e, const char *token) {
    tessera_verified_session v;
    return tessera_session_token_verify(e, token, strlen(token), &v);
}

static void test_cluster(void) {
    tessera_engine *a = NULL, *b = NULL;
    size_t users = 0;
    CHECK_ST(tessera_engine_open_postgres(S("host=127.0.0.1"), NULL, 0, NULL),
             TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_open_postgres(S("host=127.0.0.1 nonsense"), NULL, 0, &a),
             TESSERA_INVALID_ARGUMENT);
    CHECK(a == NULL);
    CHECK_ST(tessera_engine_open_postgres(S("host=127.0.0.1"), S("{\"cluster\": {\"bogus\": 1}}"),
                                          &a),
             TESSERA_INVALID_JSON);
    CHECK_ST(tessera_engine_open_postgres(S("host=127.0.0.1"),
                                          S("{\"sync_mode\": {\"relaxed_ms\": 5}}"), &a),
             TESSERA_INVALID_ARGUMENT);
    CHECK_ST(tessera_engine_open_in_memory_with_config(S("{\"cluster\": {}}"), &a),
             TESSERA_INVALID_ARGUMENT);

    /* import_from between two in-memory engines. */
    CHECK_OK(tessera_engine_open_in_memory(&a));
    CHECK_OK(tessera_engine_open_in_memory(&b));
    CHECK_OK(tessera_user_create(a, S("{\"user_id\": \"moved\", \"nickname\": \"M\"}"), NULL));
    CHECK_ST(tessera_engine_import_from(b, NULL, &users), TESSERA_NULL_POINTER);
    CHECK_ST(tessera_engine_import_from(NULL, a, &users), TESSERA_NULL_POINTER);
    CHECK_OK(tessera_engine_import_from(b, a, &users));
    CHECK(users == 1);
    CHECK_OK(get_user(b, "moved"));
    CHECK_ST(tessera_engine_import_from(b, a, NULL), TESSERA_INVALID_ARGUMENT);
    tessera_engine_free(a);
    tessera_engine_free(b);
    a = b = NULL;

    const char *dsn = getenv("TESSERA_PG_DSN");
    if (dsn == NULL || dsn[0] == '\0') {
        fprintf(stderr, "test_tessera: no TESSERA_PG_DSN, two-node cluster check skipped\n");
        return;
    }
    CHECK_OK(tessera_engine_open_postgres(dsn, strlen(dsn), NULL, 0, &a));
    CHECK_OK(tessera_engine_open_postgres(dsn, strlen(dsn), S("{\"cluster\": "
                                          "{\"max_staleness_ms\": null}}"), &b));
    if (a == NULL || b == NULL) {
        tessera_engine_free(a);
        tessera_engine_free(b);
        return;
    }
    char id[64], body[160], token[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    snprintf(id, sizeof id, "c-node-%ld", (long)getpid());
    snprintf(body, sizeof body, "{\"user_id\": \"%s\", \"nickname\": \"C\"}", id);
    CHECK_OK(tessera_user_create(a, body, strlen(body), NULL));
    CHECK(poll_status(get_user, b, id, TESSERA_OK));
    size_t len = 0;
    CHECK_OK(tessera_session_token_issue_default(a, id, strlen(id), token, sizeof token, &len,
                                                 NULL));
    token[len] = '\0';
    CHECK_OK(verify_session(b, token));
    (void)tessera_event_drain(b, 1000, NULL);
    CHECK_OK(tessera_session_token_revoke(a, id, strlen(id)));
    CHECK(poll_status(verify_session, b, token, TESSERA_TOKEN_REVOKED));
    tessera_string *events = NULL;
    CHECK_OK(tessera_event_drain(b, 100, &events));
    CHECK(events != NULL && strstr(tessera_string_ptr(events), "sessions_revoked") != NULL);
    tessera_string_free(events);
    CHECK_ST(tessera_engine_import_from(b, a, NULL), TESSERA_INVALID_ARGUMENT);
    tessera_engine_free(a);
    tessera_engine_free(b);
}

int main(void) {
    tessera_engine *e = NULL;
    test_versions_and_status();
    test_engine_open();
    test_durable();
    test_backup();
    test_owned_objects();
    test_limits();
    test_lowered_access_token_limit();
    test_cluster();
    test_token_error_table();
    CHECK_OK(tessera_engine_open_in_memory(&e));
    if (e == NULL) {
        return tt_finish("test_tessera");
    }
    test_last_error(e);
    test_users(e);
    test_list(e);
    test_devices(e);
    test_profile_image(e);
    test_access_tokens(e);
    test_session_tokens(e);
    test_keys(e);
    test_events(e);
    tessera_engine_free(e);
    return tt_finish("test_tessera");
}
