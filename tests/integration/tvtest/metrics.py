"""The --metrics-addr endpoint as a Prometheus server sees it: the address a process logged,
a scrape over HTTP (urllib), parsed with prometheus_client's text-format parser (Debian's
python3-prometheus-client), never with a regex."""
import re
import urllib.error
import urllib.request

from .procs import skip

# tracevault capture logs 'metrics on http://HOST:PORT/metrics' once the endpoint answers;
# tracevaultd 'http on http://HOST:PORT (/metrics, /api, /, /v1/traces)' (its port serves the
# API, the page and OTLP/HTTP too)
METRICS_LINE_RE = re.compile(r"(?:metrics|http) on http://([^\s/]+)")


def parser():
    """prometheus_client.parser.text_string_to_metric_families, or SKIP when absent."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        skip("python3-prometheus-client is not installed for /usr/bin/python3")
    return text_string_to_metric_families


def metrics_addr(log):
    """HOST:PORT from the 'metrics on' (capture) or 'http on' (tracevaultd) line of a log, or
    None."""
    m = METRICS_LINE_RE.search(log)
    return m.group(1) if m else None


def http_get(url, method="GET", timeout=10):
    """(status, headers, body text) of one request; an HTTP error status is returned, not
    raised."""
    req = urllib.request.Request(url, method=method, data=b"x" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Scrape:
    """One scrape of http://addr/metrics: families {name: Metric} (the parser's names:
    a counter's without _total) and samples {(sample name, labels as a sorted tuple): value}."""

    def __init__(self, addr):
        status, headers, self.text = http_get("http://%s/metrics" % addr)
        assert status == 200, (status, self.text)
        self.content_type = headers.get("Content-Type")
        self.families = {}
        self.samples = {}
        for fam in parser()(self.text):
            self.families[fam.name] = fam
            for s in fam.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(self, name, **labels):
        """The value of the sample name{labels}; AssertionError naming it when absent."""
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, "no sample %s%r in:\n%s" % (name, labels, self.text)
        return self.samples[key]

    def type_of(self, family):
        return self.families[family].type
