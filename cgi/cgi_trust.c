/*
 * cgi_trust.c - whether the CGI may trust a file it reads or runs.
 *
 * On a shared host, a file that another user can replace, directly or
 * through its folder, is that user's command running as ours.  What suexec
 * refuses is refused here too: the file must be a regular file owned by the
 * user running the CGI (or root) and writable by nobody else, and so must
 * the folder that holds it (a world-writable sticky folder such as /tmp
 * included: others can still plant names there).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"

/* The rule st breaks, said of "it" (a file) or of a folder; NULL if none. */
static const char *check_stat(apr_pool_t *p, const struct stat *st,
                              int folder)
{
    uid_t me = geteuid();

    if (folder ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
        return folder ? "is not a folder" : "is not a regular file";
    if (st->st_uid != me && st->st_uid != 0)
        return apr_psprintf(p, "is owned by uid %ld, not by the user running "
                            HRFLOW_CGI_NAME " (uid %ld) or root",
                            (long)st->st_uid, (long)me);
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return apr_psprintf(p, "is writable by others (mode %04o); "
                            "chmod go-w it",
                            (unsigned)(st->st_mode & 07777));
    return NULL;
}

static const char *folder_of(apr_pool_t *p, const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return ".";
    if (slash == path)
        return "/";
    return apr_pstrmemdup(p, path, (apr_size_t)(slash - path));
}

const char *cgi_trust_folder(apr_pool_t *p, const char *path)
{
    const char *dir = folder_of(p, path), *why;
    struct stat st;

    if (stat(dir, &st) != 0)
        return apr_psprintf(p, "its folder %s cannot be read: %s", dir,
                            strerror(errno));
    if ((why = check_stat(p, &st, 1)))
        return apr_psprintf(p, "its folder %s %s", dir, why);
    return NULL;
}

const char *cgi_trust_open(apr_pool_t *p, const char *path, int fd,
                           struct stat *st)
{
    const char *why;

    if (fstat(fd, st) != 0)
        return apr_psprintf(p, "it cannot be read: %s", strerror(errno));
    if ((why = check_stat(p, st, 0)))
        return apr_pstrcat(p, "it ", why, NULL);
    return cgi_trust_folder(p, path);
}

const char *cgi_trust_path(apr_pool_t *p, const char *path)
{
    char real[PATH_MAX];
    const char *why;
    struct stat st;

    if (stat(path, &st) != 0 || !realpath(path, real))
        return NULL;                /* the directive says what is wrong */
    if ((why = cgi_trust_folder(p, path)))
        return why;
    if ((why = check_stat(p, &st, 0)))
        return apr_pstrcat(p, "it ", why, NULL);
    if (strcmp(real, path) != 0 && (why = cgi_trust_folder(p, real)))
        return apr_psprintf(p, "it is %s, and %s", real, why);
    return NULL;
}
