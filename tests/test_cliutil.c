/* SPDX-License-Identifier: MIT */
/*
 * Tests of node/cliutil.c's shoal_write_file_atomic (used by `shoal
 * manifest build --out`): the temp file it writes next to the target is a
 * fresh name, so a symlink planted at the old guessable name
 * (<path>.tmp.<pid>) is never followed, and the target ends up a regular
 * file with the new bytes.
 */
#include "t.h"

#include "cliutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_planted_link_not_followed(void)
{
    char dir[] = "/tmp/shoal-test-cliutil-XXXXXX";
    char path[300], victim[300], link[320];
    uint8_t *got = NULL;
    size_t n = 0;
    struct stat st;

    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/release.manifest", dir);
    snprintf(victim, sizeof victim, "%s/victim.txt", dir);
    snprintf(link, sizeof link, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(victim, "w");
    REQUIRE(f);
    fputs("precious\n", f);
    fclose(f);
    REQUIRE(symlink(victim, link) == 0);

    CHECK_EQ(shoal_write_file_atomic(path, "MANIFEST", 8), 0);
    CHECK_EQ(shoal_read_file(victim, 1024, &got, &n), 0);
    CHECK(n == 9 && got && memcmp(got, "precious\n", 9) == 0);
    free(got);
    got = NULL;
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0644);
    CHECK_EQ(shoal_read_file(path, 1024, &got, &n), 0);
    CHECK(n == 8 && got && memcmp(got, "MANIFEST", 8) == 0);
    free(got);
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    /* Nothing else is left behind: the target, the victim, the link. */
    DIR *d = opendir(dir);
    int entries = 0;
    struct dirent *e;
    REQUIRE(d);
    while ((e = readdir(d)))
        entries += e->d_name[0] != '.';
    closedir(d);
    CHECK_EQ(entries, 3);
    /* A directory that does not exist: an error, nothing created. */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/missing/x", dir);
    CHECK(shoal_write_file_atomic(bad, "x", 1) < 0);
    unlink(link);
    unlink(victim);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    RUN(test_planted_link_not_followed);
    return t_done();
}
