/* SPDX-License-Identifier: MIT */
/*
 * Tests of the round trip shoald gives the scheduler for a peer
 * (node/tcpinfo.h): TCP's figure for a real loopback connection, both
 * ends, and its conversion to the scheduler's whole milliseconds, which
 * never turns a measured round trip into 0 ("not measured").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "t.h"
#include "tcpinfo.h"

static void test_ms_of_us(void)
{
    CHECK_EQ(shoal_rtt_ms_of_us(0), 0);
    CHECK_EQ(shoal_rtt_ms_of_us(1), 1);     /* loopback: tens of us */
    CHECK_EQ(shoal_rtt_ms_of_us(999), 1);
    CHECK_EQ(shoal_rtt_ms_of_us(1000), 1);
    CHECK_EQ(shoal_rtt_ms_of_us(1001), 2);
    CHECK_EQ(shoal_rtt_ms_of_us(5200), 6);  /* another zone */
    CHECK_EQ(shoal_rtt_ms_of_us(UINT32_MAX), UINT32_MAX / 1000 + 1);
}

/* Both ends of a loopback connection that carried a few messages each way
 * have a round trip, as a peer's connection does when it joins. */
static void test_loopback(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0), c = -1, s = -1;
    uint32_t us_c = 0, us_s = 0;
    char buf[64];

    REQUIRE(ls >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(ls, (struct sockaddr *)&a, sizeof a) == 0);
    REQUIRE(listen(ls, 1) == 0);
    REQUIRE(getsockname(ls, (struct sockaddr *)&a, &alen) == 0);
    c = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(c >= 0);
    REQUIRE(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    s = accept(ls, NULL, NULL);
    REQUIRE(s >= 0);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(write(c, "ping", 4), 4);
        CHECK_EQ(read(s, buf, sizeof buf), 4);
        CHECK_EQ(write(s, "pong", 4), 4);
        CHECK_EQ(read(c, buf, sizeof buf), 4);
    }
    CHECK_EQ(shoal_tcp_rtt_us(c, &us_c), 0);
    CHECK_EQ(shoal_tcp_rtt_us(s, &us_s), 0);
    CHECK(us_c > 0);
    CHECK(us_s > 0);
    /* What the scheduler gets for a loopback peer: 1 ms. */
    CHECK(shoal_rtt_ms_of_us(us_c) >= 1);
    close(c);
    close(s);
    close(ls);
}

/* Not a TCP socket: an error, never a made-up figure. */
static void test_not_tcp(void)
{
    int sv[2];
    uint32_t us = 12345;

    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(shoal_tcp_rtt_us(sv[0], &us) < 0);
    CHECK_EQ(us, 12345);
    CHECK(shoal_tcp_rtt_us(-1, &us) == -EBADF);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    RUN(test_ms_of_us);
    RUN(test_loopback);
    RUN(test_not_tcp);
    return t_done();
}
