/* libFuzzer harness: the sockfilter capture's TCP reassembler (client/capture/tcp_reasm.c) fed
 * segments of a few connections with any seq, ack, length, flags and order.
 * Input: byte 0 options (bit 0 server_port 80, bit 1 the request probe, bits 2-3 max_conns
 * 0 (the default), 1, 2 or 3), then records of 14 bytes, one segment each:
 *   u8  bits 0-1 which of 4 connections (IPv4 and IPv6), bit 2 sent by the server side,
 *       bit 3 seq and ack near the connection's base (u16 offsets; else raw u32), bit 4
 *       tv_tcp_reasm_expire after it
 *   u8  TCP flags
 *   u32 seq, u32 ack (or offsets, see bit 3)
 *   u16 len % 3000 (payload bytes moved), u16: its low 12 bits cap_len (bytes captured, at
 *       most len), its high 4 bits the time since the previous segment (n x 10 ms; 15: 5 s)
 * Every segment's byte at sequence number s is (s & 0xff), whatever its order, so reassembly
 * is checked, not just run: the bytes a DATA event hands out must be the sequence numbers it
 * claims, counting every byte delivered, cut from the copy or reported as a gap since the
 * previous event (mod 256). Ends with tv_tcp_reasm_flush: every OPEN gets one CLOSE. */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "capture/http_parse.h"
#include "capture/tcp_reasm.h"

#include "fuzz_check.h"

#define CONNS 4
#define REC_BYTES 14
#define MAX_LEN 3000
#define SLOTS 64

/* Per connection id and direction: the low byte of the next sequence number to deliver */
struct track {
	uint64_t id;
	int open;
	int have[2];
	uint8_t next[2];
};

static struct track slots[SLOTS];
static size_t n_open;
static int trace; /* FUZZ_TRACE set: print every segment and event (to read a crash) */

static struct track *slot_of(uint64_t id, int create)
{
	for (size_t i = 0; i < SLOTS; i++)
		if (slots[i].open && slots[i].id == id)
			return &slots[i];
	if (!create)
		return NULL;
	for (size_t i = 0; i < SLOTS; i++)
		if (!slots[i].open) {
			memset(&slots[i], 0, sizeof(slots[i]));
			slots[i].id = id;
			slots[i].open = 1;
			return &slots[i];
		}
	FUZZ_CHECK(!"more connections open than the harness makes");
	return NULL;
}

static void on_event(void *ctx, const struct tv_tcp_event *ev)
{
	struct track *t;

	(void)ctx;
	FUZZ_CHECK(ev->conn);
	if (trace)
		fprintf(stderr, "  event %d conn %llx dir %d len %u cap %u first %d gap %llu/%llu\n",
			ev->kind, (unsigned long long)ev->conn->id, ev->dir, ev->len, ev->cap_len,
			ev->kind == TV_TCP_EV_DATA && ev->cap_len ? ev->data[0] : -1,
			(unsigned long long)ev->gap_bytes[0], (unsigned long long)ev->gap_bytes[1]);
	if (ev->kind == TV_TCP_EV_OPEN) {
		FUZZ_CHECK(!slot_of(ev->conn->id, 0)); /* one OPEN per connection */
		slot_of(ev->conn->id, 1);
		n_open++;
	}
	t = slot_of(ev->conn->id, 0);
	FUZZ_CHECK(t); /* no event before OPEN or after CLOSE */
	for (int d = 0; d < 2; d++) {
		if (ev->gap_bytes[d])
			FUZZ_CHECK(ev->gaps[d] > 0);
		t->next[d] = (uint8_t)(t->next[d] + ev->gap_bytes[d]);
	}
	switch (ev->kind) {
	case TV_TCP_EV_DATA:
		FUZZ_CHECK(ev->dir == TV_TCP_TO_SERVER || ev->dir == TV_TCP_TO_CLIENT);
		FUZZ_CHECK(ev->cap_len <= ev->len && ev->len > 0);
		FUZZ_CHECK(ev->cap_len == 0 || ev->data);
		if (ev->cap_len && !t->have[ev->dir]) {
			t->have[ev->dir] = 1;
			t->next[ev->dir] = ev->data[0];
		}
		for (uint32_t i = 0; i < ev->cap_len; i++)
			FUZZ_CHECK(ev->data[i] == (uint8_t)(t->next[ev->dir] + i));
		t->next[ev->dir] = (uint8_t)(t->next[ev->dir] + ev->len);
		break;
	case TV_TCP_EV_CLOSE:
		t->open = 0;
		n_open--;
		break;
	default:
		break;
	}
}

static int probe(const void *data, size_t len)
{
	return tv_http_is_request_start(data, len);
}

static void endpoints(unsigned conn, struct tv_tcp_endpoint *client, struct tv_tcp_endpoint *server)
{
	memset(client, 0, sizeof(*client));
	memset(server, 0, sizeof(*server));
	client->family = server->family = conn == 3 ? AF_INET6 : AF_INET;
	client->addr[0] = 10;
	client->addr[3] = (uint8_t)(1 + (conn & 1));
	server->addr[0] = 10;
	server->addr[3] = 9;
	client->port = (uint16_t)(40000 + conn);
	server->port = conn == 2 ? 8080 : 80;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* bases near the wrap-around of the 32-bit sequence space for two of the connections */
	static const uint32_t BASE[CONNS][2] = {
		{ 1000, 5000 }, { 0xfffff000u, 0xffffff00u }, { 0x7ffffff0u, 0 }, { 0xfffffff0u, 42 },
	};
	static uint8_t pattern[MAX_LEN + 256];
	struct fuzz_in in = { data, size };
	uint8_t opt = fuzz_u8(&in);
	struct tv_tcp_reasm *t;
	uint64_t now = 1000000000ull;

	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)i;
	trace = getenv("FUZZ_TRACE") != NULL;
	memset(slots, 0, sizeof(slots));
	n_open = 0;
	t = tv_tcp_reasm_new(opt & 1 ? 80 : 0, (opt >> 2) & 3, on_event, NULL);
	if (!t)
		return 0;
	if (opt & 2)
		tv_tcp_reasm_set_request_probe(t, probe);
	while (in.n >= REC_BYTES) {
		uint8_t b0 = fuzz_u8(&in);
		unsigned conn = b0 & 3, dir = (b0 >> 2) & 1;
		struct tv_tcp_endpoint cl, sv;
		struct tv_tcp_seg s = { 0 };
		uint32_t seq = (uint32_t)fuzz_uint(&in, 4), ack = (uint32_t)fuzz_uint(&in, 4);

		s.flags = fuzz_u8(&in);
		if (b0 & 8) {
			seq = BASE[conn][dir] + (seq & 0xffff);
			ack = BASE[conn][!dir] + (ack & 0xffff);
		}
		s.seq = seq;
		s.ack = ack;
		s.len = (uint32_t)(fuzz_uint(&in, 2) % MAX_LEN);
		s.cap_len = (uint32_t)fuzz_uint(&in, 2);
		/* the high bits of cap_len move the clock: up to 63 steps of 10 ms... or 5 s */
		now += (s.cap_len >> 12) == 15 ? 5000000000ull : (s.cap_len >> 12) * 10000000ull;
		s.cap_len = (s.cap_len & 0xfff) > s.len ? s.len : (s.cap_len & 0xfff);
		/* a SYN takes one sequence number: the payload starts after it */
		s.data = pattern + ((seq + !!(s.flags & TV_TCP_SYN)) & 0xff);
		s.ts_ns = now;
		endpoints(conn, &cl, &sv);
		s.src = dir ? sv : cl;
		s.dst = dir ? cl : sv;
		if (trace)
			fprintf(stderr, "seg conn %u from %s seq %u ack %u flags %#x len %u cap %u\n",
				conn, dir ? "server" : "client", seq, ack, s.flags, s.len,
				s.cap_len);
		tv_tcp_reasm_segment(t, &s);
		if (b0 & 0x10)
			tv_tcp_reasm_expire(t, now);
		FUZZ_CHECK(tv_tcp_reasm_conns(t) == n_open);
	}
	tv_tcp_reasm_flush(t, now + 1);
	FUZZ_CHECK(n_open == 0 && tv_tcp_reasm_conns(t) == 0);
	tv_tcp_reasm_free(t);
	return 0;
}
