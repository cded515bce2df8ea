/* login_server.c: the login path of a chat server, in C, on Tessera.
 *
 * Creates users, gives each an access token (the permanent credential an app stores) and a
 * session token (what a socket presents on connect), verifies logins from several threads at
 * once on one shared engine, revokes a user's sessions and an access token, and drains the
 * revocation events a server would use to drop the affected sockets.
 *
 * Build (see docs/C_API.md), against an installed library:
 *   scripts/install.sh --prefix /usr/local
 *   cc -std=c11 examples/login_server.c $(pkg-config --cflags --libs tessera) -pthread \
 *      -o login_server && ./login_server
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

#define USERS 4
#define WORKERS 4
#define LOGINS_PER_WORKER 1000

static const tessera_engine *engine;
static char session[USERS][TESSERA_SESSION_TOKEN_MAX_LEN + 1];
static size_t session_len[USERS];
static const char *const names[USERS] = {"alice", "bob", "carol", "dave"};

/* Prints the failure and its message, and exits. */
static void must(tessera_status st, const char *what) {
    char msg[256];
    size_t len;
    if (st == TESSERA_OK) {
        return;
    }
    if (tessera_last_error_message(msg, sizeof msg, &len) != TESSERA_OK) {
        msg[0] = '\0';
    }
    fprintf(stderr, "%s: %s (%u): %s\n", what, tessera_status_str(st), (unsigned)st, msg);
    exit(1);
}

/* A socket thread: authenticates connections as they come in. */
static void *socket_worker(void *arg) {
    long ok = 0;
    int i;
    (void)arg;
    for (i = 0; i < LOGINS_PER_WORKER; i++) {
        int u = i % USERS;
        tessera_authenticated who;
        tessera_status st = tessera_user_authenticate(engine, names[u], strlen(names[u]),
                                                      session[u], session_len[u], &who);
        if (st == TESSERA_OK) {
            ok++;
        }
    }
    return (void *)ok;
}

int main(void) {
    tessera_engine *owned = NULL;
    char access[TESSERA_ACCESS_TOKEN_LEN + 1];
    size_t access_len;
    uint64_t access_id;
    pthread_t workers[WORKERS];
    tessera_string *events = NULL;
    long logins = 0;
    int i;

    printf("tessera %s (ABI %u)\n", tessera_version(), tessera_abi_version());
    if (tessera_abi_version() != TESSERA_ABI_VERSION) {
        fprintf(stderr, "built against ABI %u, loaded %u\n", TESSERA_ABI_VERSION,
                tessera_abi_version());
        return 1;
    }
    must(tessera_engine_open_in_memory(&owned), "open");
    engine = owned;

    for (i = 0; i < USERS; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"user_id\": \"%s\", \"nickname\": \"%c%s\"}", names[i],
                 names[i][0] - 32, names[i] + 1);
        must(tessera_user_create(engine, json, strlen(json), NULL), "create user");
        must(tessera_session_token_issue_default(engine, names[i], strlen(names[i]), session[i],
                                                 sizeof session[i], &session_len[i], NULL),
             "issue session");
    }
    must(tessera_access_token_issue(engine, "alice", 5, "phone", 5, access, sizeof access,
                                    &access_len, &access_id, NULL, 0, NULL),
         "issue access token");
    printf("created %d users; alice's phone token is %.9s... (id %llu)\n", USERS, access,
           (unsigned long long)access_id);

    /* Several socket threads verify logins on the one engine at once. */
    for (i = 0; i < WORKERS; i++) {
        pthread_create(&workers[i], NULL, socket_worker, NULL);
    }
    for (i = 0; i < WORKERS; i++) {
        void *ok;
        pthread_join(workers[i], &ok);
        logins += (long)ok;
    }
    printf("%ld of %d logins accepted across %d threads\n", logins, WORKERS * LOGINS_PER_WORKER,
           WORKERS);

    /* Bob logs out everywhere; alice loses her phone. */
    must(tessera_session_token_revoke(engine, "bob", 3), "revoke bob's sessions");
    must(tessera_access_token_revoke(engine, "alice", 5, access_id), "revoke alice's token");
    printf("bob's old session now: %s\n",
           tessera_status_str(tessera_session_token_verify(engine, session[1], session_len[1],
                                                           NULL)));
    printf("alice's phone token now: %s\n",
           tessera_status_str(tessera_access_token_verify(engine, access, access_len, NULL)));
    memset(access, 0, sizeof access);

    /* The server drops the sockets that used revoked credentials. */
    must(tessera_event_drain(engine, 100, &events), "drain events");
    printf("events: %s\n", tessera_string_ptr(events));
    tessera_string_free(events);

    tessera_engine_free(owned);
    return 0;
}
