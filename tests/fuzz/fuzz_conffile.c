/*
 * fuzz_conffile.c - libFuzzer target for the CGI's config file: the input
 * is the file's text, parsed in memory by cgi_conffile_parse.
 *
 * Relative paths in it are taken from a private folder made once per run,
 * which holds an executable "handler", a secret file "secrets" and one that
 * others may read, "open-secrets" (refused).  Inputs with a '/' are skipped,
 * so that no path reaches outside that folder (a FIFO or a device would
 * block or change between runs).
 *
 * Invariants: a config that parses is a usable endpoint, and every string
 * it keeps outlives the parse (none points into the line buffer, which is
 * wiped when the parse ends).
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"
#include "fuzz.h"

static char folder[] = "/tmp/hrflow-fuzz-conffile-XXXXXX";
static const char *const files[] = {"handler", "secrets", "open-secrets",
                                    NULL};

static void put_file(const char *name, const char *text, mode_t mode)
{
    char *path = apr_pstrcat(fuzz_pool(), folder, "/", name, NULL);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);

    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    FUZZ_CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

static void remove_folder(void)
{
    int i;

    for (i = 0; files[i]; i++)
        unlink(apr_pstrcat(fuzz_pool(), folder, "/", files[i], NULL));
    rmdir(folder);
}

static void setup(void)
{
    FUZZ_CHECK(mkdtemp(folder) != NULL);
    atexit(remove_folder);
    put_file(files[0], "#!/bin/sh\nexit 0\n", 0755);
    put_file(files[1], "# rotated\nfuzz-secret\n  second-secret \n", 0600);
    put_file(files[2], "fuzz-secret\n", 0644);
}

static void check_config(const hf_config_t *cfg)
{
    int i;

    for (i = 0; cfg->secrets && i < cfg->secrets->nelts; i++)
        FUZZ_CHECK(*APR_ARRAY_IDX(cfg->secrets, i, const char *) != '\0');
    for (i = 0; cfg->handlers && i < cfg->handlers->nelts; i++) {
        const hf_handler_t *h = &APR_ARRAY_IDX(cfg->handlers, i, hf_handler_t);
        FUZZ_CHECK(h->pattern && *h->pattern);
        FUZZ_CHECK(hf_route_pattern_check(h->pattern) == NULL);
        FUZZ_CHECK(h->argv[0] && *h->argv[0]);
    }
    FUZZ_CHECK(!cfg->signature_header || *cfg->signature_header);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    apr_pool_t *p;
    hf_config_t *cfg;
    int inline_secret;
    const char *err;

    if (!ready++)
        setup();
    if (memchr(data, '/', size))
        return 0;
    apr_pool_create(&p, fuzz_pool());
    err = cgi_conffile_parse(p, "fuzz.conf", (const char *)data, size, folder,
                             &cfg, &inline_secret);
    if (!err)
        check_config(cfg);
    else
        FUZZ_CHECK(strncmp(err, "fuzz.conf", 9) == 0);
    apr_pool_destroy(p);
    return 0;
}
