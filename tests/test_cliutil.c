/* SPDX-License-Identifier: MIT */
/*
 * Tests of node/cliutil.c: shoal_write_file_atomic (used by `shoal
 * manifest build --out`): the temp file it writes next to the target is a
 * fresh name, so a symlink planted at the old guessable name
 * (<path>.tmp.<pid>) is never followed, and the target ends up a regular
 * file with the new bytes. The size and rate parsers shoald's options use:
 * "100Mb" is 100 Mbit/s (it was 100 MiB/s, the b dropped), "nan" is
 * refused (it was 9223372036854775808 bytes/s), and the log's rate text.
 */
#include "t.h"

#include "cliutil.h"

#include <dirent.h>
#include <errno.h>
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

/* Rate |s| parses to |want| bytes/s. */
static void rate_is(const char *s, uint64_t want)
{
    char why[256] = "";
    uint64_t v = 12345;
    int rv = shoal_parse_rate(s, &v, why, sizeof why);
    if (rv != 0 || v != want)
        fprintf(stderr, "rate '%s': rv %d, %llu (want %llu) %s\n", s, rv,
                (unsigned long long)v, (unsigned long long)want, why);
    CHECK(rv == 0 && v == want);
}

/* Rate |s| is refused, with a reason that quotes it. */
static void rate_refused(const char *s)
{
    char why[256] = "";
    uint64_t v = 12345;
    int rv = shoal_parse_rate(s, &v, why, sizeof why);
    if (rv == 0)
        fprintf(stderr, "rate '%s' accepted as %llu\n", s, (unsigned long long)v);
    CHECK(rv == -EINVAL);
    CHECK(v == 12345);
    CHECK(strstr(why, s) != NULL);
}

static void test_rates(void)
{
    /* Bytes/s, K/M/G/T in powers of 1024, as shoald always read them. */
    rate_is("0", 0);
    rate_is("1000", 1000);
    rate_is("100M", 100ull << 20);
    rate_is("100MB", 100ull << 20);
    rate_is("100MiB", 100ull << 20);
    rate_is("100MB/s", 100ull << 20);
    rate_is("1.5G", 3ull << 29);
    rate_is("4k", 4096);
    rate_is("512B", 512);
    /* Bits/s, in powers of 1000, as shoal-sim reads them: 100Mb is a link
     * of 100 Mbit/s, 12.5 MB/s (it was 100 MiB/s). */
    rate_is("100Mb", 12500000);
    rate_is("100Mbit", 12500000);
    rate_is("100Mbit/s", 12500000);
    rate_is("100mbps", 12500000);
    rate_is("10Gb", 1250000000);
    rate_is("1Kbit", 125);
    rate_is("800bit", 100);
    /* Nonsense and the ambiguous. */
    rate_refused("nan");
    rate_refused("NaN");
    rate_refused("inf");
    rate_refused("-1");
    rate_refused("-0");
    rate_refused("+5M");
    rate_refused("1e9");
    rate_refused("0x10");
    rate_refused("");
    rate_refused("M");
    rate_refused(" 5M");
    rate_refused("5 M");
    rate_refused("100Mibit"); /* mebibits: give MiB */
    rate_refused("100Mib");
    rate_refused("100MBps");
    rate_refused("100Mbytes");
    rate_refused("5X");
    rate_refused("1bit");     /* 0.125 B/s would be 0: no cap at all */
    rate_refused("2T");       /* over SHOAL_RATE_MAX (1T) */
    rate_refused("99999999999999999999999999");
    rate_is("1T", SHOAL_RATE_MAX);
}

static void test_sizes(void)
{
    uint64_t v = 0;
    CHECK(shoal_parse_size("16M", &v) == 0 && v == 16u << 20);
    CHECK(shoal_parse_size("16MiB", &v) == 0 && v == 16u << 20);
    CHECK(shoal_parse_size("1.5K", &v) == 0 && v == 1536);
    CHECK(shoal_parse_size("7", &v) == 0 && v == 7);
    v = 99;
    CHECK(shoal_parse_size("nan", &v) == -EINVAL);
    CHECK(shoal_parse_size("inf", &v) == -EINVAL);
    CHECK(shoal_parse_size("-1", &v) == -EINVAL);
    CHECK(shoal_parse_size("16Mb", &v) == -EINVAL); /* b: bits, not a size */
    CHECK(shoal_parse_size("1e3", &v) == -EINVAL);
    CHECK(shoal_parse_size("", &v) == -EINVAL);
    CHECK(v == 99);
}

static void test_fmt_rate(void)
{
    char buf[64];
    CHECK(strcmp(shoal_fmt_rate(buf, sizeof buf, 12500000), "11.92 MiB/s (100 Mbit/s)") == 0);
    CHECK(strcmp(shoal_fmt_rate(buf, sizeof buf, 4u << 20), "4.00 MiB/s (33.55 Mbit/s)") == 0);
    CHECK(strcmp(shoal_fmt_rate(buf, sizeof buf, 0), "none") == 0);
    CHECK(strcmp(shoal_fmt_rate(buf, sizeof buf, 100), "100 B/s (800 bit/s)") == 0);
}

int main(void)
{
    RUN(test_planted_link_not_followed);
    RUN(test_rates);
    RUN(test_sizes);
    RUN(test_fmt_rate);
    return t_done();
}
