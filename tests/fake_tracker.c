/* SPDX-License-Identifier: MIT */
/*
 * A tracker that lies, for tests (test_swarm.py): it takes any node's
 * TRK_AUTH without proving anything, and answers every GET_PEERS with the
 * most peers a PEERS message holds, each a made-up node key at one of the
 * addresses given (taken in turn). Everything else gets an ERROR.
 * Connections are served one after another, as a node keeps one.
 *
 * usage: fake_tracker ADDR[,ADDR...]
 * Prints "listening on 127.0.0.1:PORT", then one line per PEERS sent.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "error.h"
#include "frame.h"
#include "msg.h"

static int conn = -1;

static int read_all(void *p, size_t n)
{
    uint8_t *b = p;

    while (n > 0) {
        ssize_t k = recv(conn, b, n, 0);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_msg(const struct shoal_msg *m)
{
    struct shoal_buf b;
    int rv;

    shoal_buf_init(&b, 1u << 24);
    rv = shoal_msg_encode(m, &b);
    if (rv == 0 && send(conn, b.data, b.len, MSG_NOSIGNAL) != (ssize_t)b.len)
        rv = -1;
    shoal_buf_free(&b);
    return rv;
}

int main(int argc, char **argv)
{
    static struct shoal_msg m, in;
    const char *addrs[SHOAL_MSG_PEERS_MAX];
    size_t naddrs = 0;
    char *list;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t salen = sizeof sa;
    long lists = 0;
    int lfd;

    if (argc != 2 || sodium_init() < 0) {
        fprintf(stderr, "usage: fake_tracker ADDR[,ADDR...]\n");
        return 2;
    }
    list = strdup(argv[1]);
    for (char *s = strtok(list, ","); s && naddrs < SHOAL_MSG_PEERS_MAX; s = strtok(NULL, ","))
        addrs[naddrs++] = s;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (naddrs == 0 || lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(lfd, 4) != 0 || getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0) {
        perror("fake_tracker");
        return 1;
    }
    printf("listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    while ((conn = accept(lfd, NULL, NULL)) >= 0) {
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_TRK_CHALLENGE;
        randombytes_buf(m.u.trk_challenge.nonce, 32);
        m.u.trk_challenge.server_time = (uint64_t)time(NULL);
        (void)send_msg(&m);
        for (;;) {
            uint8_t h[SHOAL_FRAME_HDR_LEN], *body;
            size_t len;

            if (read_all(h, sizeof h) != 0)
                break;
            len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
            if (len > SHOAL_FRAME_MAX_AUTH || !(body = malloc(len ? len : 1)))
                break;
            if (read_all(body, len) != 0 || shoal_msg_decode(&in, body, len) != 0) {
                free(body);
                break;
            }
            memset(&m, 0, sizeof m);
            if (in.type == SHOAL_MSG_TRK_AUTH) {
                m.type = SHOAL_MSG_OK;
            } else if (in.type == SHOAL_MSG_ANNOUNCE) {
                m.type = SHOAL_MSG_ANNOUNCE_REPLY;
                m.u.announce_reply.interval_ms = 1000;
            } else if (in.type == SHOAL_MSG_GET_PEERS) {
                m.type = SHOAL_MSG_PEERS;
                memcpy(m.u.peers.manifest_id, in.u.get_peers.manifest_id, 32);
                m.u.peers.count = SHOAL_MSG_PEERS_MAX;
                for (unsigned i = 0; i < SHOAL_MSG_PEERS_MAX; i++) {
                    struct shoal_msg_peer *p = &m.u.peers.peers[i];
                    const char *a = addrs[i % naddrs];
                    randombytes_buf(p->node_pk, 32);
                    p->addr.p = a;
                    p->addr.len = (uint32_t)strlen(a);
                    p->zone.p = "default";
                    p->zone.len = 7;
                    p->complete = true;
                    p->have_chunks = 1;
                }
                printf("PEERS %ld\n", ++lists);
                fflush(stdout);
            } else {
                m.type = SHOAL_MSG_ERROR;
                m.u.error.code = SHOAL_ENOTFOUND;
                m.u.error.message.p = "no";
                m.u.error.message.len = 2;
            }
            free(body);
            if (send_msg(&m) != 0)
                break;
        }
        close(conn);
    }
    return 0;
}
