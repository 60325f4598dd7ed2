/* SPDX-License-Identifier: MIT */
/*
 * Tests of shoald's state file (node/state.h): what is saved reads back the
 * same; a missing file is an empty set; a file that is not ours, or was
 * written for another cache, is refused with a reason; a bad line is named
 * and skipped while the others load; the file's name depends on the cache
 * (two daemons never share one by accident) but not on how the cache path
 * is spelt; the directory follows --state-dir, then $STATE_DIRECTORY's
 * first entry, then $XDG_STATE_HOME.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "state.h"
#include "t.h"
#include "t_fs.h"

static char root[64];

static void entry(struct shoal_state_entry *e, int n, const char *branch, bool complete)
{
    memset(e, 0, sizeof *e);
    memset(e->id, n, 32);
    e->type = n % 2 ? SHOAL_REPO_DATASET : SHOAL_REPO_MODEL;
    snprintf(e->repo, sizeof e->repo, "org/name-%d", n);
    memset(e->commit, 'a' + n % 6, 40);
    snprintf(e->branch, sizeof e->branch, "%s", branch);
    e->complete = complete;
    snprintf(e->manifest, sizeof e->manifest, "%s/cache dir/x %d.manifest", root, n);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static void test_round_trip(void)
{
    char path[256], cache[256], why[512];
    struct shoal_state_entry in[3], *out = NULL;
    size_t n = 99, skipped = 99;

    snprintf(path, sizeof path, "%s/new/dir/releases.list", root);
    snprintf(cache, sizeof cache, "%s/cache dir", root);
    entry(&in[0], 1, "", false);
    entry(&in[1], 2, "main", true);
    entry(&in[2], 3, "pr/1", true);
    /* Missing: an empty set, no error. */
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), 0);
    CHECK_EQ(n, 0);
    CHECK(out == NULL);
    /* The directory is made (private) on the first save. */
    CHECK_EQ(shoal_state_save(path, cache, in, 3), 0);
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(skipped, 0);
    for (size_t i = 0; out && i < 3 && i < n; i++)
        CHECK(memcmp(&in[i], &out[i], sizeof in[i]) == 0);
    free(out);
    /* Saving fewer replaces the file. */
    CHECK_EQ(shoal_state_save(path, cache, &in[1], 1), 0);
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), 0);
    CHECK_EQ(n, 1);
    CHECK(out && strcmp(out[0].branch, "main") == 0 && out[0].complete);
    free(out);
    CHECK_EQ(shoal_state_save(path, cache, in, 0), 0);
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), 0);
    CHECK_EQ(n, 0);
    free(out);
    /* What the format cannot carry is refused, the file left alone. */
    snprintf(in[0].manifest, sizeof in[0].manifest, "%s/a\nb", root);
    CHECK_EQ(shoal_state_save(path, cache, in, 1), -EINVAL);
    entry(&in[0], 1, "../x", false);
    CHECK_EQ(shoal_state_save(path, cache, in, 1), -EINVAL);
}

#define COMMIT "0123456789012345678901234567890123456789"

/* 64 hex digits: |c| repeated. */
static const char *hex64(char *buf, char c)
{
    memset(buf, c, 64);
    buf[64] = '\0';
    return buf;
}

/* "+rollout" after the state reads back as the flag, with either state;
 * a suffix that is not it makes the line bad. */
static void test_rollout_mark(void)
{
    char path[256], cache[256], why[512], text[1024], id[65];
    struct shoal_state_entry in[2], *out = NULL;
    size_t n = 0, skipped = 0;

    snprintf(path, sizeof path, "%s/rollout.list", root);
    snprintf(cache, sizeof cache, "%s/cache dir", root);
    entry(&in[0], 4, "", true);
    entry(&in[1], 5, "main", false);
    in[0].rollout = in[1].rollout = true;
    CHECK_EQ(shoal_state_save(path, cache, in, 2), 0);
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(skipped, 0);
    if (n == 2)
        CHECK(memcmp(in, out, sizeof in) == 0);
    free(out);
    out = NULL;
    memset(id, 'c', 64);
    id[64] = '\0';
    snprintf(text, sizeof text,
             "shoald-releases-v1 %s\n"
             "%s model org/a@%s - complete+rollouts %s/m\n"
             "%s model org/a@%s - pulling %s/m\n", cache, id, id + 24, root, id, id + 24, root);
    write_text(path, text);
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(skipped, 1);
    if (n == 1)
        CHECK(!out[0].rollout && !out[0].complete);
    free(out);
}

static void test_refused(void)
{
    char path[256], cache[256], other[256], text[2048], why[512], id[5][65];
    struct shoal_state_entry in[1], *out = NULL;
    size_t n, skipped;

    snprintf(path, sizeof path, "%s/refused.list", root);
    snprintf(cache, sizeof cache, "%s/c1", root);
    snprintf(other, sizeof other, "%s/c2", root);
    write_text(path, "garbage\n");
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), SHOAL_EBADMSG);
    CHECK(strstr(why, "not a shoald state file") != NULL);
    write_text(path, "");
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), SHOAL_EBADMSG);
    CHECK(strstr(why, "empty") != NULL);
    /* Another cache's file. */
    entry(&in[0], 1, "", true);
    CHECK_EQ(shoal_state_save(path, other, in, 1), 0);
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), SHOAL_EBADMSG);
    CHECK(strstr(why, "written for the cache") != NULL && strstr(why, other) != NULL);
    /* A directory is not a state file. */
    CHECK(shoal_state_load(root, cache, &out, &n, &skipped, why, sizeof why) != 0);
    /* A good header: bad lines are skipped and the first is named. */
    snprintf(text, sizeof text,
             "shoald-releases-v1 %s\n"
             "# a comment\n"
             "%s model org/a@%s - complete /m/a.manifest\n"
             "%s model org/b@%s - halfway /m/b.manifest\n"
             "%s fish org/c@%s - complete /m/c.manifest\n"
             "%s dataset org/d@%s dev pulling /m/d d.manifest\n"
             "%s model org/e@%s - pulling relative.manifest\n"
             "tail without newline",
             cache, hex64(id[0], '1'), COMMIT, hex64(id[1], '2'), COMMIT, hex64(id[2], '3'),
             COMMIT, hex64(id[3], '4'), COMMIT, hex64(id[4], '5'), COMMIT);
    write_text(path, text);
    CHECK_EQ(shoal_state_load(path, cache, &out, &n, &skipped, why, sizeof why), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(skipped, 4);
    CHECK(strstr(why, "line 4: state 'halfway'") != NULL);
    if (n == 2) {
        CHECK(strcmp(out[0].repo, "org/a") == 0 && out[0].complete && !out[0].branch[0]);
        CHECK(strcmp(out[1].repo, "org/d") == 0 && out[1].type == SHOAL_REPO_DATASET &&
              strcmp(out[1].branch, "dev") == 0 && strcmp(out[1].manifest, "/m/d d.manifest") == 0);
    }
    free(out);
}

static void test_path(void)
{
    char p1[512], p2[512], p3[512], dir[512], abs1[512], abs2[512], cwd[256];

    REQUIRE(getcwd(cwd, sizeof cwd));
    REQUIRE(chdir(root) == 0);
    REQUIRE(mkdir("hf", 0700) == 0);
    CHECK_EQ(shoal_state_path(p1, sizeof p1, dir, sizeof dir, abs1, sizeof abs1, "/sd", "hf"), 0);
    CHECK(strcmp(dir, "/sd") == 0 && strncmp(p1, "/sd/releases-", 13) == 0);
    /* The same cache spelt another way names the same file. */
    snprintf(abs2, sizeof abs2, "%s/./hf/", root);
    CHECK_EQ(shoal_state_path(p2, sizeof p2, dir, sizeof dir, abs2, sizeof abs2, "/sd", abs2), 0);
    CHECK(strcmp(p1, p2) == 0);
    CHECK(strcmp(abs1, abs2) == 0);
    /* Another cache, another file; one not made yet still has a name. */
    CHECK_EQ(shoal_state_path(p3, sizeof p3, dir, sizeof dir, abs2, sizeof abs2, "/sd",
                              "not-yet"), 0);
    CHECK(strcmp(p1, p3) != 0);
    CHECK(strstr(abs2, "/not-yet") != NULL && abs2[0] == '/');
    /* A cache below a symlink (a linked home or HF_HOME) names the same
     * file before and after it is made: the first restart after a fresh
     * pull must find what the first run wrote. */
    REQUIRE(mkdir("real", 0700) == 0);
    REQUIRE(symlink("real", "link") == 0);
    CHECK_EQ(shoal_state_path(p2, sizeof p2, dir, sizeof dir, abs2, sizeof abs2, "/sd",
                              "link/hf/hub"), 0);
    REQUIRE(mkdir("real/hf", 0700) == 0 && mkdir("real/hf/hub", 0700) == 0);
    CHECK_EQ(shoal_state_path(p3, sizeof p3, dir, sizeof dir, abs1, sizeof abs1, "/sd",
                              "link/hf/hub"), 0);
    CHECK(strcmp(p2, p3) == 0);
    CHECK(strcmp(abs1, abs2) == 0 && strstr(abs1, "/real/hf/hub") != NULL);
    REQUIRE(chdir(cwd) == 0);
    /* Without the option: $STATE_DIRECTORY's first entry... */
    setenv("STATE_DIRECTORY", "/var/lib/a:/var/lib/b", 1);
    CHECK_EQ(shoal_state_path(p1, sizeof p1, dir, sizeof dir, abs1, sizeof abs1, NULL, "/c"), 0);
    CHECK(strcmp(dir, "/var/lib/a") == 0);
    /* ... else root's /var/lib/shoald or the XDG state home. */
    unsetenv("STATE_DIRECTORY");
    setenv("XDG_STATE_HOME", "/xdg", 1);
    CHECK_EQ(shoal_state_path(p1, sizeof p1, dir, sizeof dir, abs1, sizeof abs1, NULL, "/c"), 0);
    CHECK(strcmp(dir, geteuid() == 0 ? "/var/lib/shoald" : "/xdg/shoald") == 0);
    /* A newline cannot go on the header line. */
    CHECK_EQ(shoal_state_path(p1, sizeof p1, dir, sizeof dir, abs1, sizeof abs1, "/s", "/c\nd"),
             -EINVAL);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/shoal-state-XXXXXX");
    REQUIRE(mkdtemp(root));
    RUN(test_round_trip);
    RUN(test_rollout_mark);
    RUN(test_refused);
    RUN(test_path);
    t_rmtree(root);
    return t_done();
}
