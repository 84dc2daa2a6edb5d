/* libFuzzer: the fetch loop's pipelined answer parser (peer_conn) reading
 * arbitrary bytes from a peer. The first input byte sets how many requests
 * are in flight and the block size; the rest is what the peer "sends"
 * (through a socketpair, then EOF). Every accepted status-0 answer must be
 * exactly the asked block's length and match the FIFO order. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/peer_conn.h"
#include "net/sock.h"

static int listener = -1;
static struct sockaddr_in listen_addr;

static uint64_t block_len(void *ctx, uint32_t file, uint64_t block)
{
    uint64_t bs = *(uint64_t *)ctx;
    (void)file;
    return block == 3 ? bs / 2 + 1 : bs;   /* block 3 is a short last block */
}

static uint8_t *take_buffer(void *ctx, size_t len, size_t *cap)
{
    (void)ctx;
    *cap = len;
    return malloc(len ? len : 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 60000)
        return 0;
    if (listener < 0) {   /* peer_conn_open needs somewhere to connect */
        sock_make_addr(0x7f000001, 0, &listen_addr);
        listener = sock_listen(&listen_addr, 1, NULL, 0);
        if (listener < 0 || sock_local_addr(listener, &listen_addr) < 0)
            abort();
    }
    struct peer_conn pc;
    if (peer_conn_open(&pc, &listen_addr, NULL, 0) < 0)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        abort();
    close(pc.fd);            /* read from our socketpair instead */
    pc.fd = sv[0];
    pc.connected = true;
    size_t inflight = 1 + data[0] % 4;
    uint64_t bs = 1 + (uint64_t)(data[0] >> 2) * 7;
    uint8_t hash[CASCADE_HASH_LEN] = {0};
    for (uint64_t b = 0; b < inflight; b++)
        peer_conn_queue_request(&pc, 0, b, hash);
    if (write(sv[1], data + 1, size - 1) < 0) { /* partial input is fine */ }
    close(sv[1]);
    struct peer_answer ans;
    char err[CASCADE_ERRLEN];
    const struct peer_conn_hooks hooks = {&bs, block_len, take_buffer};
    uint64_t expect_block = 0;
    for (int guard = 0; guard < 64; guard++) {
        memset(&ans, 0, sizeof ans);
        int rc = peer_conn_read_answer(&pc, &hooks, &ans, err, sizeof err);
        if (rc != 1)
            break;
        if (ans.block != expect_block++)
            abort();
        if (ans.status == WIRE_STATUS_OK && ans.body_len != block_len(&bs, 0, ans.block))
            abort();
        free(ans.body);
    }
    uint8_t *leftover;
    size_t cap;
    peer_conn_close(&pc, &leftover, &cap);
    free(leftover);
    return 0;
}
