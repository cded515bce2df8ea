/* A minimal test harness for the Tessera C tests: counts checks, prints failures with the
 * library's last error message, and ends with the line "N passed, M failed". */
#ifndef TT_H
#define TT_H

#include <stdio.h>
#include <string.h>

#include "tessera.h"

static int tt_passed = 0;
static int tt_failed = 0;

static void tt_report(const char *file, int line, const char *what) {
    char msg[512];
    size_t len = 0;
    msg[0] = '\0';
    (void)tessera_last_error_message(msg, sizeof msg, &len);
    fprintf(stderr, "FAIL %s:%d: %s (last error: \"%s\")\n", file, line, what, msg);
}

static void tt_report_status(const char *file, int line, const char *call, tessera_status got,
                             const char *expected) {
    char msg[512];
    size_t len = 0;
    msg[0] = '\0';
    (void)tessera_last_error_message(msg, sizeof msg, &len);
    fprintf(stderr, "FAIL %s:%d: %s returned %u (%s), expected %s (last error: \"%s\")\n", file,
            line, call, (unsigned)got, tessera_status_str(got), expected, msg);
}

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (cond) {                                                                           \
            tt_passed++;                                                                      \
        } else {                                                                              \
            tt_failed++;                                                                      \
            tt_report(__FILE__, __LINE__, #cond);                                             \
        }                                                                                     \
    } while (0)

/* Checks that a call returns the expected status. */
#define CHECK_ST(call, expected)                                                              \
    do {                                                                                      \
        tessera_status tt_st_ = (call);                                                       \
        if (tt_st_ == (tessera_status)(expected)) {                                           \
            tt_passed++;                                                                      \
        } else {                                                                              \
            tt_failed++;                                                                      \
            tt_report_status(__FILE__, __LINE__, #call, tt_st_, #expected);                   \
        }                                                                                     \
    } while (0)

#define CHECK_OK(call) CHECK_ST(call, TESSERA_OK)

/* A string literal or C string as a (ptr, len) pair. */
#define S(s) (s), strlen(s)

static int tt_finish(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, tt_passed, tt_failed);
    return tt_failed == 0 ? 0 : 1;
}

#endif
