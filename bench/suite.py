#!/usr/bin/env python3
"""Helpers for bench/run.sh: the load-benchmark suite.

Reuses bench/h1_helper.py's machinery (/proc/stat CPU jiffies, process-tree
run time and RSS, quiet-machine wait, wrk parsing, free ports) and adds what
the suite needs on top: h2load parsing, per-load rows, the configurations of
the route-heavy case and of Envoy, the report (JSON + Markdown) and the
plots (matplotlib, optional: the report is written without it).

Subcommands:
  sample PID             CPU 0 and 1 jiffies and the process tree's run time
                         and RSS, as one JSON line (one call, not three)
  row PROXY LOAD ROUND TOOL OUT SAMPLE_BEFORE SAMPLE_AFTER QUIET BODY [LOG]
                         one measurement as a JSON line (and a summary line
                         on stderr)
  h2load FILE [LOG]      parse h2load output (and its --log-file latencies)
  routes DIR N BACKEND_PORT SLUICE_PORT NGINX_PORT HAPROXY_PORT ENVOY_PORT
                         write the route-heavy configurations (N exact routes)
  envoy OUT PORT BACKEND_PORT [ROUTES_JSON]
                         write an Envoy bootstrap (one listener, codec AUTO)
  report JSONL OUTDIR    results.json, report.md, *.png
"""

import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h1_helper as h1  # noqa: E402  (the HTTP/1.1 bench's /proc and wrk code)


# --- h2load -------------------------------------------------------------------

def parse_h2load(path, log=None):
    text = open(path).read()
    out = {}
    m = re.search(r"^finished in ([\d.]+)(us|ms|s|m), ([\d.]+) req/s", text, re.M)
    if not m:
        raise SystemExit(f"no summary in h2load output {path}:\n{text[-2000:]}")
    out["wrk_seconds"] = h1.to_us(m.group(1) + m.group(2)) / 1e6
    out["rps"] = float(m.group(3))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    out["requests"] = int(m.group(4))
    out["socket_errors"] = int(m.group(5)) + int(m.group(6)) + int(m.group(7))
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    out["non_2xx"] = (int(m.group(3)) + int(m.group(4))) if m else 0
    lat = []
    if log and os.path.exists(log):
        for line in open(log):
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1].strip() != "-1":
                try:
                    lat.append(float(parts[2]))
                except ValueError:
                    pass
    if lat:
        lat.sort()
        for pct in (50, 75, 90, 99):
            out[f"p{pct}_us"] = lat[min(len(lat) - 1, int(len(lat) * pct / 100))]
    else:
        m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
        out["p50_us"] = h1.to_us(m.group(3)) if m else None  # mean, no percentiles
        out["p99_us"] = None
    return out


# --- one measurement ----------------------------------------------------------

def sample(a):
    print(json.dumps({"c0": h1.cpu_jiffies(0), "c1": h1.cpu_jiffies(1), "p": h1.proc_tree(int(a[0]))}))


def row(a):
    proxy, load, rnd, tool, outfile = a[0], a[1], int(a[2]), a[3], a[4]
    sa, sb = json.loads(a[5]), json.loads(a[6])
    c0a, c0b, c1a, c1b = sa["c0"], sb["c0"], sa["c1"], sb["c1"]
    pa, pb = sa["p"], sb["p"]
    q = [float(x) for x in a[7].split()]
    body = int(a[8])
    log = a[9] if len(a) > 9 else None
    w = h1.parse_wrk(outfile) if tool == "wrk" else parse_h2load(outfile, log)
    hz = os.sysconf("SC_CLK_TCK")
    busy0 = (c0b[0] - c0a[0]) / hz
    win0 = (c0b[1] - c0a[1]) / hz
    busy1 = (c1b[0] - c1a[0]) / hz
    req = max(w["requests"], 1)
    gb = w["requests"] * body / 1e9
    r = {
        "proxy": proxy, "load": load, "round": rnd, "tool": tool, **w,
        "cpu0_busy_s": busy0, "cpu0_window_s": win0,
        "cpu0_busy_pct": 100.0 * busy0 / win0 if win0 else None,
        "cpu_us_per_req": busy0 * 1e6 / req,
        "cpu1_us_per_req": busy1 * 1e6 / req,
        "proc_cpu_us_per_req": (pb["run_ns"] - pa["run_ns"]) / 1e3 / req,
        "cpu_s_per_gb": busy0 / gb if gb > 0.5 else None,
        "mb_per_s": w["rps"] * body / 1e6,
        "rss_kb": pb["rss_kb"],
        "cpu0_busy_pct_before": q[0], "cpu1_busy_pct_before": q[1],
        "waited_for_quiet_s": q[2],
    }
    print(json.dumps(r))
    p99 = f"{r['p99_us']:>9,.0f}" if r.get("p99_us") is not None else "        –"
    err = r["non_2xx"] + r["socket_errors"]
    print(f"  {rnd:<2} {load:<9} {proxy:<10} {r['rps']:>9,.0f} req/s  p99 {p99} µs  "
          f"CPU0 {r['cpu_us_per_req']:7.2f} µs/req (proc {r['proc_cpu_us_per_req']:6.2f})  "
          f"busy {r['cpu0_busy_pct'] or 0:3.0f}%  RSS {r['rss_kb'] / 1024:6.1f} MB"
          + (f"  ERRORS {err}" if err else ""), file=sys.stderr)


# --- configurations -------------------------------------------------------------

def route_path(i):
    return f"/api/v1/svc{i}/items"


def routes(a):
    d, n, bport = a[0], int(a[1]), int(a[2])
    sport, nport, hport, eport = (int(x) for x in a[3:7])
    os.makedirs(d, exist_ok=True)
    paths = [route_path(i) for i in range(n)]
    # sluice: one HTTPRoute per route, Exact path, in the order given
    with open(f"{d}/sluice.yaml", "w") as f:
        f.write(f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: bench}}
spec:
  gatewayClassName: sluice
  listeners:
  - {{name: http, protocol: HTTP, port: {sport}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-bench
  namespace: bench
  labels: {{kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{{name: http, port: {bport}, protocol: TCP}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
""")
        for i, p in enumerate(paths):
            f.write(f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: bench}}
spec:
  parentRefs: [{{name: bench}}]
  rules: [{{matches: [{{path: {{type: Exact, value: "{p}"}}}}], backendRefs: [{{name: backend, port: 80}}]}}]
""")
    # nginx: exact locations (nginx keeps them in a sorted tree)
    with open(f"{d}/nginx-locations.conf", "w") as f:
        for p in paths:
            f.write(f"location = {p} {{ proxy_pass http://backend; }}\n")
    # HAProxy: one ACL + use_backend per route, evaluated in order
    with open(f"{d}/haproxy-routes.cfg", "w") as f:
        for i, p in enumerate(paths):
            f.write(f"  acl r{i} path {p}\n  use_backend be if r{i}\n")
    # Envoy: one route per path in one virtual host, evaluated in order
    with open(f"{d}/envoy-routes.json", "w") as f:
        json.dump([{"match": {"path": p}, "route": {"cluster": "backend"}} for p in paths], f)
    # Pingora: a set of exact paths (a HashSet in the proxy)
    with open(f"{d}/pingora-paths.txt", "w") as f:
        f.write("\n".join(paths) + "\n")
    print(route_path(n - 1))


def envoy(a):
    out, port, bport = a[0], int(a[1]), int(a[2])
    if len(a) > 3:
        rts = json.load(open(a[3]))
    else:
        rts = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    big = 1000000
    cfg = {
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "per_connection_buffer_limit_bytes": 1048576,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "codec_type": "AUTO",
                        "http2_protocol_options": {"max_concurrent_streams": 1024},
                        "route_config": {"name": "r", "virtual_hosts": [
                            {"name": "all", "domains": ["*"], "routes": rts}]},
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/"
                                             "envoy.extensions.filters.http.router.v3.Router"}}],
                    }}]}],
            }],
            "clusters": [{
                "name": "backend",
                "type": "STATIC",
                "connect_timeout": "5s",
                "per_connection_buffer_limit_bytes": 1048576,
                "circuit_breakers": {"thresholds": [{
                    "max_connections": big, "max_pending_requests": big,
                    "max_requests": big, "max_retries": big}]},
                "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": bport}}}}]}]},
            }],
        },
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            "overload.global_downstream_max_connections": 100000}}]},
    }
    with open(out, "w") as f:
        json.dump(cfg, f, indent=1)


# --- report -----------------------------------------------------------------------

LOADS = {
    "small": "HTTP/1.1 keep-alive, 13-byte response",
    "1mib": "HTTP/1.1 keep-alive, 1 MiB response",
    "close": "HTTP/1.1, new connection per request (Connection: close)",
    "h2c64": "h2c prior knowledge, h2load -c64 -m16, 13-byte response",
    "h2c32": "h2c prior knowledge, h2load -c32 -m16, 13-byte response (issue 4)",
    "routes10k": "HTTP/1.1 keep-alive, 10,000 exact routes, request hits the last",
}
KEYS = ("rps", "p50_us", "p99_us", "cpu_us_per_req", "proc_cpu_us_per_req",
        "cpu1_us_per_req", "cpu_s_per_gb", "mb_per_s", "cpu0_busy_pct", "rss_kb")
SLUICES = ("sluice-off", "sluice-on")


def med(rows, k):
    v = [r[k] for r in rows if r.get(k) is not None]
    return statistics.median(v) if v else None


def spread(rows, k):
    v = [r[k] for r in rows if r.get(k) is not None]
    return [min(v), max(v)] if v else None


def fmt(v, f):
    return "–" if v is None else f.format(v)


def report(a):
    src, outdir = a[0], a[1]
    meta, rows, notes = {}, [], []
    if src.endswith(".json"):  # re-render a results.json
        doc = json.load(open(src))
        meta, notes, rows = doc["meta"], doc["notes"], doc["rounds"]
        src = os.devnull
    for line in open(src):
        line = line.strip()
        if not line:
            continue
        o = json.loads(line)
        kind = o.pop("kind", "row")
        if kind == "meta":
            meta.update(o)
        elif kind == "note":
            notes.append(o["text"])
        else:
            rows.append(o)
    loads = [l for l in LOADS if any(r["load"] == l for r in rows)]
    proxies = []
    for p in meta.get("proxies", []) + [r["proxy"] for r in rows]:
        if p not in proxies and any(r["proxy"] == p for r in rows):
            proxies.append(p)
    summary = {}
    for l in loads:
        summary[l] = {}
        for p in proxies:
            pr = [r for r in rows if r["load"] == l and r["proxy"] == p]
            if not pr:
                continue
            s = {k: med(pr, k) for k in KEYS}
            s["spread"] = {k: spread(pr, k) for k in ("cpu_us_per_req", "proc_cpu_us_per_req", "rps", "p99_us")}
            s["rounds"] = len(pr)
            s["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in pr)
            summary[l][p] = s
    ratios = {}
    for sl in SLUICES:
        for l in loads:
            s = summary[l].get(sl)
            if not s:
                continue
            for p, q in summary[l].items():
                if p in SLUICES:
                    continue
                ratios.setdefault(sl, {}).setdefault(l, {})[p] = {
                    k: (s[k] / q[k]) if s.get(k) and q.get(k) else None
                    for k in ("cpu_us_per_req", "rps", "p99_us", "rss_kb", "cpu_s_per_gb")}
    # The same CPU ratio taken within each round (the proxies of a round run
    # back to back), then the median over rounds: drift of the machine's
    # speed between rounds moves both sides of a round's ratio together.
    round_ratios = {}
    for sl in SLUICES:
        for l in loads:
            for p in proxies:
                if p in SLUICES:
                    continue
                per = []
                for rnd in sorted({r["round"] for r in rows}):
                    a = [r for r in rows if r["load"] == l and r["proxy"] == sl and r["round"] == rnd]
                    b = [r for r in rows if r["load"] == l and r["proxy"] == p and r["round"] == rnd]
                    if a and b and a[0].get("cpu_us_per_req") and b[0].get("cpu_us_per_req"):
                        per.append(a[0]["cpu_us_per_req"] / b[0]["cpu_us_per_req"])
                if per:
                    round_ratios.setdefault(sl, {}).setdefault(l, {})[p] = {
                        "median": statistics.median(per), "rounds": per}
    doc = {"meta": meta, "notes": notes, "summary": summary, "ratios": ratios,
           "round_ratios": round_ratios, "rounds": rows}
    os.makedirs(outdir, exist_ok=True)
    with open(f"{outdir}/results.json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    md = markdown(meta, notes, loads, proxies, summary, ratios, rows, round_ratios)
    with open(f"{outdir}/report.md", "w") as f:
        f.write(md)
    pngs = plots(outdir, loads, proxies, summary, meta)
    print(md)
    if pngs:
        print("plots: " + ", ".join(pngs), file=sys.stderr)


def target_lines(summary):
    out = []

    def get(load, p, k="cpu_us_per_req"):
        return summary.get(load, {}).get(p, {}).get(k)

    def check(text, num, den, limit):
        if num is None or den is None:
            out.append(f"- {text}: not measured")
        else:
            r = num / den
            out.append(f"- {text}: **{r:.2f}×** (target ≤ {limit}×) — {'met' if r <= limit else 'NOT met'}")

    check("HTTP/1.1 small, CPU/req, sluice --ebpf off ÷ HAProxy", get("small", "sluice-off"), get("small", "haproxy"), 0.9)
    check("HTTP/1.1 small, CPU/req, sluice --ebpf on ÷ HAProxy", get("small", "sluice-on"), get("small", "haproxy"), 0.6)
    check("h2c -c64 -m16, CPU/req, sluice ÷ HAProxy", get("h2c64", "sluice-off"), get("h2c64", "haproxy"), 0.9)
    check("h2c -c32 -m16 (issue 4), CPU/req, sluice ÷ HAProxy", get("h2c32", "sluice-off"), get("h2c32", "haproxy"), 0.9)
    peers = [v["cpu_us_per_req"] for p, v in summary.get("routes10k", {}).items()
             if p not in SLUICES and v.get("cpu_us_per_req")]
    check("10,000 routes, CPU/req, sluice ÷ best peer", get("routes10k", "sluice-off"), min(peers) if peers else None, 0.5)
    check("eBPF (issue 5 a): small CPU/req, on ÷ off", get("small", "sluice-on"), get("small", "sluice-off"), 0.7)
    check("eBPF (issue 5 b): 1 MiB CPU/GB, on ÷ off", get("1mib", "sluice-on", "cpu_s_per_gb"), get("1mib", "sluice-off", "cpu_s_per_gb"), 0.7)
    return out


def sluice_tables(md, loads, peers, has, cell, align="---:|"):
    """Appends one table per sluice configuration that `has`: a row per
    load, a column per peer, `cell(sluice, load, peer)` in each."""
    for sl in SLUICES:
        if not has(sl):
            continue
        md.append(f"| {sl} ÷ | " + " | ".join(peers) + " |")
        md.append("|---|" + align * len(peers))
        for l in loads:
            md.append(f"| {l} | " + " | ".join(cell(sl, l, p) for p in peers) + " |")
        md.append("")


def markdown(meta, notes, loads, proxies, summary, ratios, rows, round_ratios=None):
    md = []
    md.append(f"# Sluice load benchmark — {meta.get('date', '?')}\n")
    md.append(f"Command: `{meta.get('command', 'bench/run.sh')}`  ")
    md.append(f"Machine: {meta.get('cpu', '?')}, {meta.get('nproc', '?')} CPUs, kernel {meta.get('kernel', '?')}, "
              f"{meta.get('os', '?')}.  ")
    md.append(f"Versions: {meta.get('versions', '?')}  ")
    md.append(f"Method: {meta.get('method', '')}\n")
    if meta.get("cpu_quota"):
        md.append(f"**CPU quota mode**: each proxy limited to {meta['cpu_quota']} % of one core "
                  f"({meta.get('cgroup', '')}); requests/s ranks the proxies.\n")
    md.append("## Headline: sluice ÷ peer, CPU 0 µs per request (median of rounds; < 1 is better)\n")
    peers = [p for p in proxies if p not in SLUICES]

    def cpu_ratio(sl, l, p):
        return fmt(((ratios[sl].get(l) or {}).get(p) or {}).get("cpu_us_per_req"), "{:.2f}×")

    def round_ratio(sl, l, p):
        x = (round_ratios[sl].get(l) or {}).get(p)
        return "–" if not x else f"{x['median']:.2f}× [{', '.join(f'{v:.2f}' for v in x['rounds'])}]"

    def proc_ratio(sl, l, p):
        a = (summary[l].get(sl) or {}).get("proc_cpu_us_per_req")
        b = (summary[l].get(p) or {}).get("proc_cpu_us_per_req")
        return f"{a / b:.2f}×" if a and b else "–"

    sluice_tables(md, loads, peers, lambda sl: sl in ratios, cpu_ratio)
    if round_ratios:
        md.append("The same CPU ratio taken within each round, then the median over rounds "
                  "(per-round values in brackets):\n")
        sluice_tables(md, loads, peers, lambda sl: sl in round_ratios, round_ratio, "---|")
    md.append("The same ratios on the proxy process's own run time per request (its threads' "
              "schedstat; excludes softirq work the kernel charges to CPU 0 outside the process, "
              "and is not inflated by other programs on CPU 0):\n")
    sluice_tables(md, loads, peers, lambda sl: sl in ratios, proc_ratio)
    md.append("Targets (from the issues):\n")
    md.extend(target_lines(summary))
    md.append("")
    busy = [r["cpu0_busy_pct_before"] for r in rows if r.get("cpu0_busy_pct_before", -1) >= 0]
    if busy:
        noisy = sum(1 for b in busy if b >= 10)
        md.append(f"Quiet check: before {noisy} of {len(busy)} measurements CPU 0 was ≥ 10 % busy with "
                  f"other programs (median {statistics.median(busy):.0f} %); there, CPU 0 µs/req "
                  f"includes their time and the process figure is the fairer one.\n")
    for l in loads:
        md.append(f"## {l}: {LOADS[l]}\n")
        md.append(f"Load: `{meta.get('load_cmds', {}).get(l, '?')}`\n")
        big = l == "1mib"
        hdr = ["proxy", "requests/s", "p50 (µs)", "p99 (µs)", "CPU 0 µs/req", "(min–max)",
               "proxy process µs/req", "CPU 1 µs/req"]
        if big:
            hdr += ["CPU 0 s/GB", "MB/s"]
        hdr += ["CPU 0 busy %", "RSS (MB)", "errors"]
        md.append("| " + " | ".join(hdr) + " |")
        md.append("|---|" + "---:|" * (len(hdr) - 1))
        for p in proxies:
            s = summary[l].get(p)
            if not s:
                continue
            sp = s["spread"]["cpu_us_per_req"]
            cells = [p, fmt(s["rps"], "{:,.0f}"), fmt(s["p50_us"], "{:,.0f}"), fmt(s["p99_us"], "{:,.0f}"),
                     fmt(s["cpu_us_per_req"], "{:.2f}"), f"{sp[0]:.2f}–{sp[1]:.2f}" if sp else "–",
                     fmt(s["proc_cpu_us_per_req"], "{:.2f}"), fmt(s["cpu1_us_per_req"], "{:.2f}")]
            if big:
                cells += [fmt(s["cpu_s_per_gb"], "{:.3f}"), fmt(s["mb_per_s"], "{:,.0f}")]
            cells += [fmt(s["cpu0_busy_pct"], "{:.0f}"), fmt(s["rss_kb"] and s["rss_kb"] / 1024, "{:.1f}"),
                      str(s["errors"])]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    if notes:
        md.append("## Notes from the run\n")
        md.extend(f"- {n}" for n in notes)
        md.append("")
    md.append("## Per measurement\n")
    md.append("| round | load | proxy | requests/s | p99 (µs) | CPU 0 µs/req | process µs/req | CPU 0 busy % | CPU 0/1 busy % before | errors |")
    md.append("|---|---|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        md.append(f"| {r['round']} | {r['load']} | {r['proxy']} | {r['rps']:,.0f} | {fmt(r.get('p99_us'), '{:,.0f}')} | "
                  f"{r['cpu_us_per_req']:.2f} | {r['proc_cpu_us_per_req']:.2f} | {fmt(r['cpu0_busy_pct'], '{:.0f}')} | "
                  f"{r['cpu0_busy_pct_before']:.0f} / {r['cpu1_busy_pct_before']:.0f} | {r['non_2xx'] + r['socket_errors']} |")
    md.append("")
    return "\n".join(md)


COLORS = {"sluice-off": "#1f77b4", "sluice-on": "#17becf", "nginx": "#2ca02c", "haproxy": "#d62728",
          "envoy": "#9467bd", "pingora": "#ff7f0e"}


def plots(outdir, loads, proxies, summary, meta):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots (scripts/setup.sh --bench installs it)", file=sys.stderr)
        return []
    made = []
    specs = [("cpu_per_req.png", "cpu_us_per_req", "CPU 0 µs per request (lower is better)", 1, True),
             ("proc_per_req.png", "proc_cpu_us_per_req",
              "proxy process run time, µs per request (lower is better; not inflated by other programs)", 1, True),
             ("rps.png", "rps", "requests/s", 1, True),
             ("p99.png", "p99_us", "p99 latency (ms)", 1e-3, True),
             ("rss.png", "rss_kb", "RSS at end of run (MB)", 1 / 1024, False)]
    sub = f"{meta.get('date', '')[:10]} · {meta.get('cpu', '')} · kernel {meta.get('kernel', '')}"
    if meta.get("cpu_quota"):
        sub += f" · CPU quota {meta['cpu_quota']} %"
    for fname, key, title, scale, errbars in specs:
        n = len(loads)
        cols = min(3, n)
        rws = (n + cols - 1) // cols
        fig, axes = plt.subplots(rws, cols, figsize=(4.2 * cols, 3.2 * rws), squeeze=False)
        for i, l in enumerate(loads):
            ax = axes[i // cols][i % cols]
            ps = [p for p in proxies if p in summary[l] and summary[l][p].get(key) is not None]
            vals = [summary[l][p][key] * scale for p in ps]
            err = None
            if errbars and key in ("cpu_us_per_req", "proc_cpu_us_per_req", "rps", "p99_us"):
                lo, hi = [], []
                for p, v in zip(ps, vals):
                    sp = summary[l][p]["spread"].get(key)
                    lo.append(max(v - sp[0] * scale, 0) if sp else 0)
                    hi.append(max(sp[1] * scale - v, 0) if sp else 0)
                err = [lo, hi]
            ax.bar(range(len(ps)), vals, color=[COLORS.get(p, "grey") for p in ps], yerr=err, capsize=3)
            ax.set_xticks(range(len(ps)))
            ax.set_xticklabels(ps, rotation=35, ha="right", fontsize=8)
            ax.set_title(l, fontsize=10)
            ax.tick_params(axis="y", labelsize=8)
            for j, v in enumerate(vals):
                ax.annotate(f"{v:,.1f}" if v < 100 else f"{v:,.0f}", (j, v), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
        for j in range(n, rws * cols):
            axes[j // cols][j % cols].axis("off")
        fig.suptitle(f"{title}\n{sub}", fontsize=10)
        fig.tight_layout()
        fig.savefig(f"{outdir}/{fname}", dpi=80)
        plt.close(fig)
        made.append(fname)
    return made


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "sample":
        sample(a)
    elif cmd == "row":
        row(a)
    elif cmd == "h2load":
        print(json.dumps(parse_h2load(a[0], a[1] if len(a) > 1 else None)))
    elif cmd == "routes":
        routes(a)
    elif cmd == "envoy":
        envoy(a)
    elif cmd == "report":
        report(a)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
