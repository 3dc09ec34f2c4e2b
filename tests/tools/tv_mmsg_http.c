/* Test-only HTTP/1.1 server that moves every byte with recvmmsg/sendmmsg, so the capture's
 * MODE_MMSG path (test_capture_mmsg.py) sees real batched syscalls: GET /<n> -> n bytes of 'm'. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

/* A request head must fit the receive buffer; a longer one gets 431 and the connection ends. */
#define HEAD_MAX_BYTES (16 * 1024)
/* recvmmsg batch: two messages of two iovecs each. Each message covers at most
 * --recv-slot-bytes of the free buffer, so a small slot makes the kernel spread one read over
 * both messages (the capture must then sum msg_len and cope with bytes past the first). */
#define RECV_VLEN 2
#define RECV_IOV_PER_MSG 2
#define DEFAULT_RECV_SLOT_BYTES 4096
/* GET /<n> serves at most this many body bytes; a larger n is 404. */
#define MAX_BODY_BYTES (1024 * 1024)
/* Bodies point into one static run of 'm': iovecs of at most this size. */
#define BODY_RUN_BYTES (64 * 1024)
/* Head in message 0, body halves in messages 1 and 2. */
#define SEND_MSGS 3
#define SEND_IOV_PER_MSG (MAX_BODY_BYTES / 2 / BODY_RUN_BYTES + 1)
#define RESP_HEAD_BYTES 256
/* A keep-alive connection idle this long is closed so the next client is not starved. */
#define IDLE_TIMEOUT_MS (30 * 1000)
/* A client that stops reading cannot hold a send forever. */
#define SEND_TIMEOUT_MS (10 * 1000)
#define NOT_FOUND_BODY "not found\n"
#define TOO_LARGE_BODY "request head too large\n"
#define BAD_REQUEST_BODY "bad request\n"

/* Set by SIGTERM/SIGINT, which are blocked everywhere except inside ppoll: a signal can only
 * land while the server waits, never in the middle of a send. */
static volatile sig_atomic_t stop;

static const char usage[] =
	"Usage: tv_mmsg_http [--recv-slot-bytes N]   (test-only HTTP/1.1 server)\n"
	"Listens on 127.0.0.1 on a free port, prints 'port N' once listening, serves one\n"
	"connection at a time with recvmmsg/sendmmsg only until SIGTERM:\n"
	"  GET /<n>   200 with n bytes of 'm' (n <= 1048576)\n"
	"  other      404 with a short body\n"
	"  --recv-slot-bytes N   bytes of free buffer each recvmmsg message may take (1..8192,\n"
	"                        default 4096)\n"
	"Example: tv_mmsg_http --recv-slot-bytes 16\n";

static const struct option options[] = {
	{"recv-slot-bytes", required_argument, NULL, 's'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static char body_run[BODY_RUN_BYTES];

struct conn {
	int fd;
	size_t recv_slot_bytes;
	size_t len;              /* unparsed bytes at the start of buf */
	uint64_t discard_bytes;  /* request body bytes still to drop (bodies are not kept) */
	char buf[HEAD_MAX_BYTES];
};

struct request {
	bool get, head_method, close, chunked, bad;
	uint64_t content_length;
	char path[64];
};

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Waits until fd is readable. Returns 0, -ETIMEDOUT, -EINTR once stop is set, or -errno. */
static int wait_readable(int fd, int timeout_ms, const sigset_t *waitmask)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = timeout_ms % 1000 * 1000000L };
	int rc;

	for (;;) {
		if (stop)
			return -EINTR;
		rc = ppoll(&p, 1, timeout_ms < 0 ? NULL : &ts, waitmask);
		if (rc > 0)
			return 0;
		if (rc == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* One recvmmsg into the free part of buf, appended to the unparsed bytes (a message the kernel
 * left short is closed up with the next). Returns the bytes received, 0 at end of stream. */
static ssize_t recv_batch(struct conn *c)
{
	struct mmsghdr msgs[RECV_VLEN];
	struct iovec iovs[RECV_VLEN][RECV_IOV_PER_MSG];
	size_t off = c->len, got = 0;
	int vlen = 0, n;

	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < RECV_VLEN && off < sizeof(c->buf); i++) {
		size_t room = sizeof(c->buf) - off;
		size_t take = room < c->recv_slot_bytes ? room : c->recv_slot_bytes;
		size_t first = take > 1 ? take / 2 : take;

		iovs[i][0] = (struct iovec){ .iov_base = c->buf + off, .iov_len = first };
		iovs[i][1] = (struct iovec){ .iov_base = c->buf + off + first,
					     .iov_len = take - first };
		msgs[i].msg_hdr.msg_iov = iovs[i];
		msgs[i].msg_hdr.msg_iovlen = take > first ? 2 : 1;
		off += take;
		vlen++;
	}
	/* MSG_WAITFORONE: block for the first message only; on TCP a blocking second message
	 * would wait for more bytes the client may never send */
	n = recvmmsg(c->fd, msgs, vlen, MSG_WAITFORONE, NULL);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		const char *from = msgs[i].msg_hdr.msg_iov[0].iov_base;

		memmove(c->buf + c->len, from, msgs[i].msg_len);
		c->len += msgs[i].msg_len;
		got += msgs[i].msg_len;
	}
	return (ssize_t)got;
}

/* Sends msgs[0, count) with sendmmsg calls until all are out. Returns 0 or -errno. A short
 * message ends the connection (-EAGAIN) rather than being resumed: SIGTERM/SIGINT are blocked
 * here, so only the send timeout cuts a blocking send, and sendmmsg goes on to the next message
 * after a short one, so the byte stream may already have a hole. */
static int send_all(int fd, struct mmsghdr *msgs, int count)
{
	int first = 0;

	while (first < count) {
		int n = sendmmsg(fd, msgs + first, count - first, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = first; i < first + n; i++) {
			const struct msghdr *h = &msgs[i].msg_hdr;
			size_t total = 0;

			for (size_t j = 0; j < h->msg_iovlen; j++)
				total += h->msg_iov[j].iov_len;
			if (msgs[i].msg_len != total)
				return -EAGAIN;
		}
		first += n;
	}
	return 0;
}

/* Appends body bytes [from, from + len) of a response to one message as iovecs. */
static void add_body_iovs(struct mmsghdr *m, struct iovec *iov, const char *body, size_t len)
{
	size_t k = 0;

	while (len > 0 && k < SEND_IOV_PER_MSG) {
		size_t n = len < BODY_RUN_BYTES ? len : BODY_RUN_BYTES;

		iov[k++] = (struct iovec){ .iov_base = (void *)(body ? body : body_run), .iov_len = n };
		if (body)
			body += n;
		len -= n;
	}
	m->msg_hdr.msg_iov = iov;
	m->msg_hdr.msg_iovlen = k;
}

/* One response in one sendmmsg call: the head in message 0, the body split over messages 1 and
 * 2 (one body message for a 1-byte body, none for an empty one or HEAD). body NULL: 'm's. */
static int send_response(int fd, int status, const char *reason, const char *body,
			 size_t body_len, bool send_body, bool close)
{
	struct iovec iovs[SEND_MSGS][SEND_IOV_PER_MSG];
	struct mmsghdr msgs[SEND_MSGS];
	char head[RESP_HEAD_BYTES];
	size_t half = body_len - body_len / 2;
	int count = 1;
	int len;

	len = snprintf(head, sizeof(head),
		       "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n",
		       status, reason, body_len, close ? "Connection: close\r\n" : "");
	if (len < 0 || (size_t)len >= sizeof(head))
		return -EOVERFLOW;
	memset(msgs, 0, sizeof(msgs));
	iovs[0][0] = (struct iovec){ .iov_base = head, .iov_len = (size_t)len };
	msgs[0].msg_hdr.msg_iov = iovs[0];
	msgs[0].msg_hdr.msg_iovlen = 1;
	if (send_body && body_len > 0) {
		add_body_iovs(&msgs[count], iovs[count], body, half);
		count++;
		if (body_len - half > 0) {
			add_body_iovs(&msgs[count], iovs[count], body ? body + half : NULL,
				      body_len - half);
			count++;
		}
	}
	return send_all(fd, msgs, count);
}

/* Case-insensitive header name match at line start; returns the value or NULL. */
static const char *header_value(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);

	if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	line += n + 1;
	while (*line == ' ' || *line == '\t')
		line++;
	return line;
}

/* Parses the head buf[0, head_len) (ending in CRLFCRLF) into r. */
static void parse_request(const char *buf, size_t head_len, struct request *r)
{
	const char *end = buf + head_len, *eol = memmem(buf, head_len, "\r\n", 2);
	const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	const char *line;

	memset(r, 0, sizeof(*r));
	if (!sp1 || !sp2 || (size_t)(sp2 - sp1 - 1) >= sizeof(r->path) ||
	    (size_t)(eol - sp2 - 1) != strlen("HTTP/1.1") || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		r->bad = true;
		return;
	}
	r->get = sp1 - buf == 3 && memcmp(buf, "GET", 3) == 0;
	r->head_method = sp1 - buf == 4 && memcmp(buf, "HEAD", 4) == 0;
	memcpy(r->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	r->close = sp2[8] == '0'; /* HTTP/1.0: no keep-alive negotiation here */
	for (line = eol + 2; line < end - 2; line = eol + 2) {
		size_t len;
		const char *v;

		eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		len = (size_t)(eol - line);
		if ((v = header_value(line, len, "Content-Length"))) {
			char *stop_at;

			errno = 0;
			r->content_length = strtoull(v, &stop_at, 10);
			if (errno || stop_at == v || (*stop_at != '\r' && *stop_at != ' '))
				r->bad = true;
		} else if ((v = header_value(line, len, "Transfer-Encoding"))) {
			r->chunked = true;
		} else if ((v = header_value(line, len, "Connection"))) {
			r->close = strncasecmp(v, "close", 5) == 0;
		}
	}
}

/* Body size asked for by GET /<n>, or -1 when the path is not that. */
static long body_size(const char *path)
{
	char *end;
	long n;

	if (path[0] != '/' || path[1] < '0' || path[1] > '9')
		return -1;
	errno = 0;
	n = strtol(path + 1, &end, 10);
	if (errno || *end != '\0' || n > MAX_BODY_BYTES)
		return -1;
	return n;
}

/* Answers every complete request at the start of c->buf. Returns 1 when the connection must
 * close after what was sent, 0 to read on, -errno on a send failure. */
static int serve_requests(struct conn *c)
{
	for (;;) {
		struct request r;
		const char *end;
		size_t head_len;
		long n;
		int rc;

		if (c->discard_bytes > 0) {
			size_t d = c->len < c->discard_bytes ? c->len : (size_t)c->discard_bytes;

			memmove(c->buf, c->buf + d, c->len - d);
			c->len -= d;
			c->discard_bytes -= d;
			if (c->discard_bytes > 0)
				return 0;
		}
		end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		if (!end) {
			if (c->len < sizeof(c->buf))
				return 0;
			rc = send_response(c->fd, 431, "Request Header Fields Too Large",
					   TOO_LARGE_BODY, strlen(TOO_LARGE_BODY), true, true);
			return rc ? rc : 1;
		}
		head_len = (size_t)(end - c->buf) + 4;
		parse_request(c->buf, head_len, &r);
		memmove(c->buf, c->buf + head_len, c->len - head_len);
		c->len -= head_len;
		/* a chunked body has no length to skip: answer and close instead of parsing it */
		if (r.bad || r.chunked) {
			rc = send_response(c->fd, 400, "Bad Request", BAD_REQUEST_BODY,
					   strlen(BAD_REQUEST_BODY), true, true);
			return rc ? rc : 1;
		}
		c->discard_bytes = r.content_length;
		n = r.get ? body_size(r.path) : -1;
		if (n >= 0)
			rc = send_response(c->fd, 200, "OK", NULL, (size_t)n, true, r.close);
		else
			rc = send_response(c->fd, 404, "Not Found", NOT_FOUND_BODY,
					   strlen(NOT_FOUND_BODY), !r.head_method, r.close);
		if (rc)
			return rc;
		if (r.close)
			return 1;
	}
}

/* Serves one accepted connection until the client closes, asks to close, idles out or a stop
 * signal arrives. The caller closes c->fd. */
static int serve_conn(struct conn *c, const sigset_t *waitmask)
{
	struct timeval tv = { .tv_sec = SEND_TIMEOUT_MS / 1000,
			      .tv_usec = SEND_TIMEOUT_MS % 1000 * 1000 };
	int rc;

	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return -errno;
	for (;;) {
		ssize_t got;

		rc = wait_readable(c->fd, IDLE_TIMEOUT_MS, waitmask);
		if (rc)
			return rc == -ETIMEDOUT ? 0 : rc;
		got = recv_batch(c);
		if (got < 0)
			return got == -ECONNRESET ? 0 : (int)got;
		if (got == 0)
			return 0; /* end of stream: a request left unfinished is dropped */
		rc = serve_requests(c);
		if (rc)
			return rc > 0 ? 0 : rc;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t addr_len = sizeof(addr);
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t block, waitmask;
	struct conn *c = NULL;
	size_t slot = DEFAULT_RECV_SLOT_BYTES;
	int lfd = -1, opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		char *end;

		switch (opt) {
		case 's':
			errno = 0;
			slot = strtoul(optarg, &end, 10);
			if (errno || *end || slot < 1 || slot > HEAD_MAX_BYTES / RECV_VLEN) {
				fprintf(stderr, "tv_mmsg_http: invalid --recv-slot-bytes: '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "tv_mmsg_http: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	memset(body_run, 'm', sizeof(body_run));
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	if (sigprocmask(SIG_BLOCK, &block, &waitmask) || sigaction(SIGTERM, &sa, NULL) ||
	    sigaction(SIGINT, &sa, NULL)) {
		fprintf(stderr, "tv_mmsg_http: signals: %s\n", strerror(errno));
		goto cleanup;
	}
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	c = calloc(1, sizeof(*c));
	if (!c) {
		fprintf(stderr, "tv_mmsg_http: calloc %zu: %s\n", sizeof(*c), strerror(errno));
		goto cleanup;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 16) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &addr_len)) {
		fprintf(stderr, "tv_mmsg_http: listen on 127.0.0.1:0: %s\n", strerror(errno));
		goto cleanup;
	}
	printf("port %u\n", ntohs(addr.sin_port));
	if (fflush(stdout)) {
		fprintf(stderr, "tv_mmsg_http: stdout: %s\n", strerror(errno));
		goto cleanup;
	}
	for (;;) {
		int err = wait_readable(lfd, -1, &waitmask);

		if (err == -EINTR)
			break; /* stop signal: the one clean exit */
		if (err) {
			fprintf(stderr, "tv_mmsg_http: poll listener: %s\n", strerror(-err));
			goto cleanup;
		}
		c->fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c->fd < 0) {
			if (errno == ECONNABORTED || errno == EINTR)
				continue;
			fprintf(stderr, "tv_mmsg_http: accept: %s\n", strerror(errno));
			goto cleanup;
		}
		c->recv_slot_bytes = slot;
		c->len = 0;
		c->discard_bytes = 0;
		err = serve_conn(c, &waitmask);
		close(c->fd);
		if (err == -EINTR)
			break;
		/* one client's failure (reset, send timeout) is not the server's */
		if (err)
			fprintf(stderr, "tv_mmsg_http: connection: %s\n", strerror(-err));
	}
	rc = 0;
cleanup:
	if (lfd >= 0)
		close(lfd);
	free(c);
	return rc;
}
