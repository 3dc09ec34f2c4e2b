"""The reference for Query filters (proto/PROTOCOL.md "Filters"), written from the document and
Python's own fnmatch and ipaddress, not from server/filter.c: a filter spec in the CLI's
terms (FilterSpec), its QueryFilter message, its `tracevault query` options, and whether a
TraceRecord passes it."""
import fnmatch
import ipaddress

U64_MAX = 2**64 - 1
FLAG_NAMES = {"no_response": 1, "partial": 2, "lost": 4, "cut": 8, "unseen": 32}


def v6_literal_len(pattern):
    """Length of a leading "[v6]" (RFC 3986 IP-literal), else 0."""
    if not pattern.startswith("[") or "]" not in pattern:
        return 0
    inner = pattern[1:pattern.index("]")]
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        return 0
    return len(inner) + 2


def match_kind(pattern, host=False):
    """The CLI's rule: '*', '?' or '[' makes a glob, a lone trailing '*' a prefix, else exact;
    for a host a leading "[v6]" is literal (a glob spells its '[' as "[[]").
    Returns (kind, value) with kind "exact", "prefix" or "glob"."""
    lit = v6_literal_len(pattern) if host else 0
    metas = [i for i, ch in enumerate(pattern) if ch in "*?[" and i >= lit]
    if not metas:
        return "exact", pattern
    if metas == [len(pattern) - 1] and pattern[-1] == "*":
        return "prefix", pattern[:-1]
    return "glob", ("[[]" + pattern[1:]) if lit else pattern


def _latin1(s):
    """Text as its UTF-8 bytes, one character per byte: fnmatch then matches bytes, as the
    server does."""
    return s.encode("utf-8").decode("latin-1")


def str_match(kind, value, s):
    if kind == "exact":
        return s == value
    if kind == "prefix":
        return s.startswith(value)
    return fnmatch.fnmatchcase(_latin1(s), _latin1(value))


def host_without_port(h):
    """"a.com:8080" -> "a.com", "[::1]:80" -> "[::1]"; a bare IPv6 address is left alone."""
    head, sep, port = h.rpartition(":")
    if not sep or not port.isdigit() or not port.isascii() or not head:
        return h
    if h.startswith("["):
        return head if head.endswith("]") else h
    return h if ":" in head else head


def _v6int(addr):
    """An address as 128 bits, IPv4 as ::ffff:a.b.c.d."""
    if addr.version == 4:
        return (0xffff << 32) | int(addr)
    return int(addr)


def parse_cidr(s):
    """(network int, prefix bits over 128) of "10.0.0.0/8", "::1", ...; host bits ignored."""
    net = ipaddress.ip_network(s, strict=False)
    extra = 96 if net.version == 4 else 0
    return _v6int(net.network_address), net.prefixlen + extra


def remote_int(remote):
    """The address of a record's "ip:port" / "[v6]:port" as 128 bits, or None."""
    head, sep, _ = remote.rpartition(":")
    if not sep:
        return None
    if head.startswith("[") and head.endswith("]"):
        head = head[1:-1]
        try:
            return int(ipaddress.IPv6Address(head))
        except ValueError:
            return None
    try:
        return _v6int(ipaddress.IPv4Address(head))
    except ValueError:
        return None


def cidr_contains(cidr, a):
    net, bits = cidr
    shift = 128 - bits
    return (net >> shift) == (a >> shift)


class FilterSpec:
    """A filter as `tracevault query` options take it. Every attribute empty constrains
    nothing; attributes AND, the entries of one list OR."""

    def __init__(self):
        self.methods = []      # "GET"
        self.status = []       # "5xx", "404", "500-599", "none"
        self.paths = []        # CLI patterns
        self.path_with_query = False
        self.hosts = []
        self.role = ""         # "", "server", "client", "server,client"
        self.pids = []
        self.comms = []
        self.remotes = []      # "10.0.0.0/8"
        self.trace_ids = []
        self.min_latency_ns = None
        self.max_latency_ns = None
        self.flags_any = []    # names
        self.flags_all = []
        self.clean = False

    def __repr__(self):
        return "FilterSpec(%s)" % ", ".join("%s=%r" % kv for kv in vars(self).items()
                                            if kv[1] not in ([], "", None, False))

    # ---- status ----
    @staticmethod
    def status_range(item):
        if item == "none":
            return 0, 0
        if item.endswith("xx"):
            lo = int(item[0]) * 100
            return lo, lo + 99
        if "-" in item:
            lo, hi = item.split("-")
            return int(lo), int(hi)
        return int(item), int(item)

    def flags_none(self):
        return 0xffffffff if self.clean else 0

    def bits(self, names):
        out = 0
        for n in names:
            out |= FLAG_NAMES[n]
        return out

    # ---- the message and the options ----
    def to_pb(self, pb):
        """The QueryFilter message (or None when nothing is set)."""
        f = pb.QueryFilter()
        kinds = {"exact": pb.MATCH_EXACT, "prefix": pb.MATCH_PREFIX, "glob": pb.MATCH_GLOB}
        f.methods.extend(self.methods)
        for s in self.status:
            lo, hi = self.status_range(s)
            f.status.add(lo=lo, hi=hi)
        for field, pats, host in ((f.paths, self.paths, False), (f.hosts, self.hosts, True),
                                  (f.comms, self.comms, False)):
            for p in pats:
                kind, value = match_kind(p, host)
                field.add(kind=kinds[kind], value=value)
        f.paths_with_query = self.path_with_query
        f.role = {"": pb.ROLE_ANY, "server": pb.ROLE_SERVER, "client": pb.ROLE_CLIENT,
                  "server,client": pb.ROLE_SERVER_OR_CLIENT}[self.role]
        f.pids.extend(self.pids)
        f.remotes.extend(self.remotes)
        f.trace_ids.extend(self.trace_ids)
        if self.min_latency_ns is not None or self.max_latency_ns is not None:
            f.latency_ns.lo = self.min_latency_ns or 0
            f.latency_ns.hi = U64_MAX if self.max_latency_ns is None else self.max_latency_ns
        f.flags_any = self.bits(self.flags_any)
        f.flags_all = self.bits(self.flags_all)
        f.flags_none = self.flags_none()
        return f

    def to_args(self):
        """The `tracevault query` options (lists given both ways: a,b and repeated)."""
        a = []
        if self.methods:
            a += ["--method", ",".join(self.methods)]
        for s in self.status:
            a += ["--status", s]
        for p in self.paths:
            a += ["--path", p]
        if self.path_with_query:
            a += ["--path-with-query"]
        for h in self.hosts:
            a += ["--host", h]
        if self.role:
            a += ["--role", self.role]
        if self.pids:
            a += ["--pid", ",".join(str(p) for p in self.pids)]
        for c in self.comms:
            a += ["--comm", c]
        for r in self.remotes:
            a += ["--remote", r]
        if self.trace_ids:
            a += ["--trace-id", ",".join(self.trace_ids)]
        if self.min_latency_ns is not None:
            a += ["--min-latency", "%dns" % self.min_latency_ns]
        if self.max_latency_ns is not None:
            a += ["--max-latency", "%dns" % self.max_latency_ns]
        if self.flags_any:
            a += ["--flags", ",".join(self.flags_any)]
        if self.flags_all:
            a += ["--flags", "all:" + ",".join(self.flags_all)]
        if self.clean:
            a += ["--flags", "clean"]
        return a

    # ---- the predicate ----
    def passes(self, r):
        """Whether TraceRecord r passes (PROTOCOL.md "Filters")."""
        if self.methods and r.method not in self.methods:
            return False
        if self.status and not any(lo <= r.status <= hi
                                   for lo, hi in map(self.status_range, self.status)):
            return False
        if self.paths:
            target = r.path if self.path_with_query else r.path.split("?", 1)[0]
            if not any(str_match(*match_kind(p), target) for p in self.paths):
                return False
        if self.hosts:
            h = r.host.lower()
            cands = {h, host_without_port(h)}
            if not any(str_match(k, v.lower(), c)
                       for k, v in (match_kind(p, True) for p in self.hosts) for c in cands):
                return False
        if self.role and r.role not in self.role.split(","):
            return False
        if self.pids and r.pid not in self.pids:
            return False
        if self.comms and not any(str_match(*match_kind(c), r.comm) for c in self.comms):
            return False
        if self.remotes:
            a = remote_int(r.remote)
            if a is None or not any(cidr_contains(parse_cidr(c), a) for c in self.remotes):
                return False
        if self.trace_ids and r.trace_id.lower() not in [t.lower() for t in self.trace_ids]:
            return False
        if self.min_latency_ns is not None and r.latency_ns < self.min_latency_ns:
            return False
        if self.max_latency_ns is not None and r.latency_ns > self.max_latency_ns:
            return False
        if self.flags_any and not r.flags & self.bits(self.flags_any):
            return False
        if r.flags & self.bits(self.flags_all) != self.bits(self.flags_all):
            return False
        if r.flags & self.flags_none():
            return False
        return True
