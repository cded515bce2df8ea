/* Two cluster nodes on one PostgreSQL database, from C: a session token issued by node A
 * verifies on node B; A revokes the user's sessions and B refuses the token a moment later,
 * with a sessions_revoked event to drop the user's sockets by. (Two nodes in one process to
 * keep the example short; in production each chat-server process opens one.)
 *
 *   scripts/install.sh --prefix /usr/local      (see docs/C_API.md)
 *   cc -std=c11 examples/cluster.c $(pkg-config --cflags --libs tessera) -o cluster
 *   ./cluster "host=127.0.0.1 dbname=tessera user=tessera"
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tessera.h"

static int fail(const char *what, tessera_status st) {
    char msg[512];
    size_t len = 0;
    msg[0] = '\0';
    (void)tessera_last_error_message(msg, sizeof msg, &len);
    fprintf(stderr, "%s: %s (%s)\n", what, tessera_status_str(st), msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *dsn = argc > 1 ? argv[1] : getenv("TESSERA_PG_DSN");
    if (dsn == NULL) {
        fprintf(stderr, "usage: %s CONNINFO (or set TESSERA_PG_DSN)\n", argv[0]);
        return 2;
    }
    tessera_engine *a = NULL, *b = NULL;
    tessera_status st = tessera_engine_open_postgres(dsn, strlen(dsn), NULL, 0, &a);
    if (st != TESSERA_OK) {
        return fail("open node A", st);
    }
    st = tessera_engine_open_postgres(dsn, strlen(dsn), NULL, 0, &b);
    if (st != TESSERA_OK) {
        tessera_engine_free(a);
        return fail("open node B", st);
    }
    char id[64], body[128], token[TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    size_t token_len = 0;
    snprintf(id, sizeof id, "c-alice-%ld", (long)getpid());
    snprintf(body, sizeof body, "{\"user_id\": \"%s\", \"nickname\": \"Alice\"}", id);
    int rc = 1;
    tessera_verified_session v;
    if ((st = tessera_user_create(a, body, strlen(body), NULL)) != TESSERA_OK) {
        rc = fail("create on A", st);
        goto out;
    }
    st = tessera_session_token_issue_default(a, id, strlen(id), token, sizeof token, &token_len,
                                             NULL);
    if (st != TESSERA_OK) {
        rc = fail("issue on A", st);
        goto out;
    }
    printf("node B verifies A's token: %s\n",
           tessera_status_str(tessera_session_token_verify(b, token, token_len, &v)));
    if ((st = tessera_session_token_revoke(a, id, strlen(id))) != TESSERA_OK) {
        rc = fail("revoke on A", st);
        goto out;
    }
    for (int i = 0; i < 1000; i++) { /* at most 1 s: propagation is milliseconds */
        st = tessera_session_token_verify(b, token, token_len, &v);
        if (st != TESSERA_OK) {
            break;
        }
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    printf("after A revoked: %s\n", tessera_status_str(st));
    tessera_string *events = NULL;
    if (tessera_event_drain(b, 10, &events) == TESSERA_OK) {
        printf("node B events: %s\n", tessera_string_ptr(events));
        tessera_string_free(events);
    }
    rc = st == TESSERA_TOKEN_REVOKED ? 0 : 1;
    (void)tessera_user_delete(a, id, strlen(id));
out:
    tessera_engine_free(a);
    tessera_engine_free(b);
    return rc;
}
