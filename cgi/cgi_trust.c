/*
 * cgi_trust.c - whether the CGI may trust a file it reads or runs.
 *
 * On a shared host, a file that another user can replace, directly or
 * through its folder, is that user's command running as ours.  What suexec
 * refuses is refused here too: the file must be a regular file owned by the
 * user running the CGI, by the owner of the program, or by root, and
 * writable by nobody else, and so must the folder that holds it (a
 * world-writable sticky folder such as /tmp included: others can still
 * plant names there).
 *
 * The program's owner: under suEXEC it is the user the program runs as;
 * without suEXEC the program runs as the server's user (www-data) but
 * belongs to the customer who uploaded it, and their files are no less
 * trustworthy than the program itself: whoever could replace them could
 * replace it.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"

/* The owner of the running program, or root's uid when unknown. */
static uid_t program_owner(void)
{
    struct stat st;

    return stat("/proc/self/exe", &st) == 0 ? st.st_uid : 0;
}

/* Who may own a trusted file, for a message. */
static const char *trusted_owners(apr_pool_t *p, uid_t me, uid_t owner)
{
    if (owner == me || owner == 0)
        return apr_psprintf(p, "the user running " HRFLOW_CGI_NAME
                            " (uid %ld) or root", (long)me);
    return apr_psprintf(p, "the user running " HRFLOW_CGI_NAME " (uid %ld), "
                        "the program's owner (uid %ld) or root", (long)me,
                        (long)owner);
}

/* The rule st breaks, said of "it" (a file) or of a folder; NULL if none. */
static const char *check_stat(apr_pool_t *p, const struct stat *st,
                              int folder)
{
    uid_t me = geteuid(), owner = program_owner();
    unsigned mode = (unsigned)(st->st_mode & 07777);

    if (folder ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
        return folder ? "is not a folder" : "is not a regular file";
    if (st->st_uid != me && st->st_uid != 0 && st->st_uid != owner)
        return apr_psprintf(p, "is owned by uid %ld, not by %s",
                            (long)st->st_uid, trusted_owners(p, me, owner));
    /* suexec's own words for both are "writable by others". */
    if (st->st_mode & S_IWOTH)
        return apr_psprintf(p, "is writable by others (mode %04o): only its "
                            "owner may write to it; chmod go-w it", mode);
    if (st->st_mode & S_IWGRP)
        return apr_psprintf(p, "is writable by its group (mode %04o): only "
                            "its owner may write to it; chmod g-w it", mode);
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
