/* SPDX-License-Identifier: MIT */
/*
 * The rollout file (--rollout-file): the tracker's only state that nodes
 * cannot give back after a restart. Nodes re-announce what they hold and
 * re-put manifests, but the operator's wish "every node holds X" lives only
 * here, so a tracker restarted mid-rollout still tells new nodes to pull.
 *
 * One entry per line, names percent-encoded (bytes outside '!'..'~', and
 * '%'), '#' starts a comment line:
 *     rollout ORG/NAME@COMMIT
 *     rollout ORG/NAME@COMMIT zone ZONE
 *     rollout ORG/NAME@COMMIT [zone ZONE] ref BRANCH
 * (ref: the branch the rollout moves on the nodes; a tracker older than
 * refs sets such a line aside as one that does not parse.)
 */
#ifndef SHOAL_ROLLFILE_H
#define SHOAL_ROLLFILE_H

#include <stddef.h>

#include "registry.h"

/* Largest rollout file read: SHOAL_REG_ROLLOUTS_MAX fully escaped entries
 * fit many times over. */
#define SHOAL_ROLLFILE_MAX (1u << 20)

struct shoal_rollfile_result {
    unsigned loaded;   /* entries now in the registry */
    unsigned bad;      /* lines that did not parse or were refused */
    char first_bad[256]; /* "line N: why" of the first of them */
    char *bad_text;    /* those lines as they were, each after a comment
                          "# line N: why"; malloc'd, NULL when none (see
                          shoal_rollfile_result_free) */
    size_t bad_len;
};

/*
 * Adds every rollout listed in |path| to |reg|. A missing file means none
 * (returns 0). Lines that do not parse, or that the registry refuses (too
 * many entries), are counted in |res|, copied to res->bad_text and
 * skipped: the caller decides what to keep (see shoal_rollfile_keep_bad).
 * Returns 0, SHOAL_ETOOBIG (file over SHOAL_ROLLFILE_MAX), -ENOMEM or a
 * negated errno from reading; on success the caller frees |res| with
 * shoal_rollfile_result_free.
 */
int shoal_rollfile_load(const char *path, struct shoal_reg *reg,
                        struct shoal_rollfile_result *res);

/* Frees what shoal_rollfile_load allocated in |res|. */
void shoal_rollfile_result_free(struct shoal_rollfile_result *res);

/*
 * Appends the lines |res| skipped to |bad_path| (created mode 0600 if
 * missing), after a comment naming |path| and the time, and fsyncs it (and
 * its directory when it was created), so that an operator's line is never
 * lost: not by a later start with other bad lines (earlier copies stay),
 * not by a crash (|path| itself is only ever replaced atomically, by the
 * caller's shoal_rollfile_save once this succeeded; a crash before that
 * copies the lines again at the next start). A symlink at |bad_path| is
 * not followed. Returns 0 (also with nothing to copy) or a negated errno.
 */
int shoal_rollfile_keep_bad(const char *path, const char *bad_path,
                            const struct shoal_rollfile_result *res);

/* Replaces |path| whole with the registry's rollouts (see smallfile.h).
 * Returns 0 or a negated errno. */
int shoal_rollfile_save(const char *path, const struct shoal_reg *reg);

#endif
