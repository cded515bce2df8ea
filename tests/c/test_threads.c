/* Many threads share one engine handle: each creates users, issues and verifies tokens
 * (its own and other threads'), revokes, while another thread drains events. Checks the
 * header's promise that every `const tessera_engine *` function may run concurrently, and
 * that the last error message is per thread. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tessera.h"

#define THREADS 8
#define USERS_PER_THREAD 25
#define VERIFY_ROUNDS 20

static const tessera_engine *g_engine;
static char g_tokens[THREADS][USERS_PER_THREAD][TESSERA_SESSION_TOKEN_MAX_LEN + 1];
static size_t g_token_lens[THREADS][USERS_PER_THREAD];
static pthread_barrier_t g_issued;
static pthread_barrier_t g_verified;
static pthread_barrier_t g_revoked;

struct result {
    int passed;
    int failed;
};
static struct result g_results[THREADS + 1];

#define T_CHECK(r, cond)                                                                      \
    do {                                                                                      \
        if (cond) {                                                                           \
            (r)->passed++;                                                                    \
        } else {                                                                              \
            (r)->failed++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                   \
        }                                                                                     \
    } while (0)

static void user_id(char *buf, size_t cap, int t, int u) { snprintf(buf, cap, "t%d-u%d", t, u); }

static void *worker(void *arg) {
    int t = (int)(intptr_t)arg;
    struct result *r = &g_results[t];
    char id[32];
    char json[96];
    int u, round;

    /* 1. Create users and issue one session token and one access token each. */
    for (u = 0; u < USERS_PER_THREAD; u++) {
        char access[TESSERA_ACCESS_TOKEN_LEN + 1];
        size_t access_len;
        tessera_verified_access_token va;
        user_id(id, sizeof id, t, u);
        snprintf(json, sizeof json, "{\"user_id\": \"%s\", \"nickname\": \"N\"}", id);
        T_CHECK(r, tessera_user_create(g_engine, json, strlen(json), NULL) == TESSERA_OK);
        T_CHECK(r, tessera_session_token_issue_default(g_engine, id, strlen(id), g_tokens[t][u],
                                               sizeof g_tokens[t][u], &g_token_lens[t][u],
                                               NULL) == TESSERA_OK);
        T_CHECK(r, tessera_access_token_issue(g_engine, id, strlen(id), NULL, 0, access,
                                              sizeof access, &access_len, NULL, NULL, 0,
                                              NULL) == TESSERA_OK);
        T_CHECK(r, tessera_access_token_verify(g_engine, access, access_len, &va) == TESSERA_OK &&
                       strcmp(va.user_id, id) == 0);
    }
    pthread_barrier_wait(&g_issued);

    /* 2. Verify every thread's tokens, concurrently with everyone else. */
    for (round = 0; round < VERIFY_ROUNDS; round++) {
        int other = (t + round) % THREADS;
        for (u = 0; u < USERS_PER_THREAD; u++) {
            tessera_verified_session v;
            char want[32];
            tessera_status st = tessera_session_token_verify(g_engine, g_tokens[other][u],
                                                             g_token_lens[other][u], &v);
            user_id(want, sizeof want, other, u);
            T_CHECK(r, st == TESSERA_OK && strcmp(v.user_id, want) == 0);
        }
    }
    /* The last error message is per thread: a failure here is seen here only. */
    {
        char msg[128];
        size_t len;
        T_CHECK(r, tessera_user_get(g_engine, "missing", 7, NULL) == TESSERA_NULL_POINTER);
        T_CHECK(r, tessera_last_error_message(msg, sizeof msg, &len) == TESSERA_OK &&
                       strstr(msg, "out_user") != NULL);
    }

    /* 3. Once every thread is done verifying, revoke the even users' sessions; after
     * everyone has, check all tokens. */
    pthread_barrier_wait(&g_verified);
    for (u = 0; u < USERS_PER_THREAD; u += 2) {
        user_id(id, sizeof id, t, u);
        T_CHECK(r, tessera_session_token_revoke(g_engine, id, strlen(id)) == TESSERA_OK);
    }
    pthread_barrier_wait(&g_revoked);
    for (u = 0; u < USERS_PER_THREAD; u++) {
        int other = (t + 1) % THREADS;
        tessera_status st = tessera_session_token_verify(g_engine, g_tokens[other][u],
                                                         g_token_lens[other][u], NULL);
        T_CHECK(r, st == (u % 2 == 0 ? TESSERA_TOKEN_REVOKED : TESSERA_OK));
    }
    return NULL;
}

/* Drains events while the workers run; counts the sessions_revoked ones. */
static atomic_int g_done;
static size_t g_revocations;

static void *drainer(void *arg) {
    struct result *r = &g_results[THREADS];
    (void)arg;
    for (;;) {
        int done = atomic_load(&g_done);
        int empty;
        tessera_string *ev = NULL;
        const char *p;
        /* Only failures are counted here: how often this loop runs depends on scheduling. */
        if (tessera_event_drain(g_engine, 64, &ev) != TESSERA_OK) {
            r->failed++;
            fprintf(stderr, "FAIL: tessera_event_drain\n");
            break;
        }
        empty = strcmp(tessera_string_ptr(ev), "[]") == 0;
        for (p = tessera_string_ptr(ev); p != NULL && (p = strstr(p, "sessions_revoked")) != NULL;
             p++) {
            g_revocations++;
        }
        tessera_string_free(ev);
        /* After the workers are done, keep draining until the queue is empty. */
        if (done && empty) {
            break;
        }
        if (empty) {
            sched_yield();
        }
    }
    return NULL;
}

int main(void) {
    tessera_engine *engine = NULL;
    pthread_t threads[THREADS];
    pthread_t drain;
    int i, passed = 0, failed = 0;
    size_t users = 0;

    if (tessera_engine_open_in_memory(&engine) != TESSERA_OK) {
        printf("test_threads: 0 passed, 1 failed\n");
        return 1;
    }
    g_engine = engine;
    pthread_barrier_init(&g_issued, NULL, THREADS);
    pthread_barrier_init(&g_verified, NULL, THREADS);
    pthread_barrier_init(&g_revoked, NULL, THREADS);
    pthread_create(&drain, NULL, drainer, NULL);
    for (i = 0; i < THREADS; i++) {
        pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    atomic_store(&g_done, 1);
    pthread_join(drain, NULL);

    for (i = 0; i <= THREADS; i++) {
        passed += g_results[i].passed;
        failed += g_results[i].failed;
    }
    /* Every revocation was drained exactly once. */
    if (g_revocations == (size_t)THREADS * ((USERS_PER_THREAD + 1) / 2)) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAIL: drained %zu sessions_revoked events\n", g_revocations);
    }
    if (tessera_engine_user_count(engine, &users) == TESSERA_OK &&
        users == (size_t)THREADS * USERS_PER_THREAD) {
        passed++;
    } else {
        failed++;
    }
    pthread_barrier_destroy(&g_issued);
    pthread_barrier_destroy(&g_verified);
    pthread_barrier_destroy(&g_revoked);
    tessera_engine_free(engine);
    printf("test_threads: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
