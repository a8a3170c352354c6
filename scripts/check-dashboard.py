#!/usr/bin/env python3
"""Checks a Grafana dashboard's queries against a running weir and Prometheus.

Usage: scripts/check-dashboard.py DASHBOARD.json METRICS_URL [PROMETHEUS_URL]

1. Every weir_* metric name in a panel query or template variable must be a
   sample name in weir's /metrics scrape (METRICS_URL): a renamed or
   misspelt metric fails here rather than drawing an empty panel.
2. With PROMETHEUS_URL, every query (dashboard variables replaced by
   `.*` and `1m`) must be accepted by Prometheus's /api/v1/query.
Exits 1 on any failure. Run by scripts/compose-smoke.sh.
"""
import json
import re
import sys
import urllib.parse
import urllib.request

NAME = re.compile(r"\bweir_[A-Za-z0-9_]+")


def queries(dash):
    """(where, expr) of every panel target and query variable."""
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            yield f"panel {p['title']!r} {t['refId']}", t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            yield f"variable {v['name']!r}", q["query"]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    dash = json.load(open(sys.argv[1]))
    scrape = get(sys.argv[2])
    samples = {re.split(r"[{ ]", line, 1)[0] for line in scrape.splitlines()
               if line and not line.startswith("#")}
    failures = []
    names = set()
    for where, expr in queries(dash):
        for name in NAME.findall(expr):
            names.add(name)
            if name not in samples:
                failures.append(f"{where}: {name} is not in the scrape")
    print(f"check-dashboard: {len(names)} metric names, "
          f"{len(names) - len({f.split(': ')[1] for f in failures})} found in "
          f"{sys.argv[2]} ({len(samples)} sample names there)")
    if len(sys.argv) == 4:
        ok = nonempty = 0
        for where, expr in queries(dash):
            q = expr.replace("$module", ".*").replace("$__rate_interval", "1m")
            if q.startswith("label_values("):
                q = NAME.search(q).group(0)
            url = sys.argv[3] + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
            try:
                body = json.loads(get(url))
            except Exception as e:  # HTTP 400 on a query Prometheus rejects
                failures.append(f"{where}: Prometheus rejected {q!r}: {e}")
                continue
            if body.get("status") != "success":
                failures.append(f"{where}: Prometheus: {body}")
                continue
            ok += 1
            nonempty += bool(body["data"]["result"])
        print(f"check-dashboard: {ok} queries accepted by Prometheus, {nonempty} with data now")
    for f in failures:
        print("check-dashboard: FAIL", f)
    sys.exit(1 if failures else 0)


main()
