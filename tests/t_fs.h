/* SPDX-License-Identifier: MIT */
/*
 * File-system helpers shared by tests and benchmarks that make scratch
 * directories (header-only, no harness state, so benchmarks may use it).
 */
#ifndef SHOAL_T_FS_H
#define SHOAL_T_FS_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int t_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Removes |dir| and everything below it, as far as it can. */
static inline void t_rmtree(const char *dir)
{
    nftw(dir, t_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
