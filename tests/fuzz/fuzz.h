/*
 * fuzz.h - what every libFuzzer target of tests/fuzz shares: a root pool
 * made once per process, and a check that stops the run on a broken
 * invariant, so that the fuzzer saves the input as a crash.
 */
#ifndef HRFLOW_FUZZ_H
#define HRFLOW_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <apr_general.h>

static apr_pool_t *fuzz_pool(void)
{
    static apr_pool_t *root;

    if (!root) {
        apr_initialize();
        apr_pool_create(&root, NULL);
    }
    return root;
}

#define FUZZ_CHECK(cond)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: broken invariant: %s\n", __FILE__,     \
                    __LINE__, #cond);                                      \
            abort();                                                       \
        }                                                                  \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
