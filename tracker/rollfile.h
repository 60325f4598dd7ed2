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
};

/*
 * Adds every rollout listed in |path| to |reg|. A missing file means none
 * (returns 0). Lines that do not parse, or that the registry refuses (too
 * many entries), are counted in |res| and skipped: the caller decides what
 * to keep. Returns 0, SHOAL_ETOOBIG (file over SHOAL_ROLLFILE_MAX) or a
 * negated errno from reading.
 */
int shoal_rollfile_load(const char *path, struct shoal_reg *reg,
                        struct shoal_rollfile_result *res);

/* Replaces |path| whole with the registry's rollouts (see smallfile.h).
 * Returns 0 or a negated errno. */
int shoal_rollfile_save(const char *path, const struct shoal_reg *reg);

#endif
