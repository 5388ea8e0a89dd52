#!/usr/bin/env python3
"""Helpers for bench/h1.sh (Python 3 standard library only).

Subcommands:
  ports N                     print N free TCP ports on 127.0.0.1
  cpu CPU                     print "busy total" jiffies of one CPU from
                              /proc/stat (busy = all but idle and iowait)
  proc PID                    print JSON: the process tree's run time (ns,
                              from /proc/*/schedstat), RSS (kB, VmRSS summed
                              over the tree) and context switches
  quiet THRESH MAXWAIT        wait until CPUs 0 and 1 are under THRESH %
                              busy; print "busy0 busy1 waited"
  wrk FILE                    parse wrk --latency output, print JSON
  row ...                     combine one round's samples into a JSON row
  idle HOST PORT N PID...     open N keep-alive connections, one request
                              each, keep them open, print JSON with the RSS
                              of the given process trees
  report JSONL OUT.json OUT.md   medians, ratios and the Markdown table
"""

import json
import os
import re
import resource
import select
import socket
import statistics
import sys
import time


# --- /proc -----------------------------------------------------------------

def cpu_jiffies(cpu):
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal guest guest_nice
                # (guest time is already counted in user/nice)
                busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                total = busy + v[3] + v[4]
                return busy, total
    raise SystemExit(f"cpu{cpu} not in /proc/stat")


def children(pid):
    """All descendants of pid (a master process and its workers)."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def status_fields(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def proc_tree(pid):
    run_ns = rss_kb = vcs = nvcs = 0
    pids = children(pid)
    for p in pids:
        try:
            # every thread's run time: sum over /proc/P/task/*/schedstat
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    run_ns += int(f.read().split()[0])
                st = status_fields(f"{p}/task/{tid}")
                vcs += int(st.get("voluntary_ctxt_switches", 0))
                nvcs += int(st.get("nonvoluntary_ctxt_switches", 0))
            rss_kb += int(status_fields(p).get("VmRSS", "0 kB").split()[0])
        except (OSError, ValueError):
            continue
    return {"pids": pids, "run_ns": run_ns, "rss_kb": rss_kb,
            "vol_cs": vcs, "invol_cs": nvcs}


def quiet(args):
    """Wait until CPUs 0 and 1 are both under THRESH % busy over one second
    (the proxy idle: anything busy is someone else), at most MAXWAIT
    seconds. Prints "busy0 busy1 waited_seconds"."""
    thresh, maxwait = float(args[0]), float(args[1])
    t0 = time.monotonic()
    while True:
        a = [cpu_jiffies(c) for c in (0, 1)]
        time.sleep(1)
        b = [cpu_jiffies(c) for c in (0, 1)]
        pct = [100.0 * (b[i][0] - a[i][0]) / max(b[i][1] - a[i][1], 1) for i in (0, 1)]
        waited = time.monotonic() - t0 - 1
        if max(pct) < thresh or waited >= maxwait:
            print(f"{pct[0]:.1f} {pct[1]:.1f} {waited:.0f}")
            return


# --- wrk -------------------------------------------------------------------

UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"latency {text!r}")
    return float(m.group(1)) * UNIT_US[m.group(2)]


def parse_wrk(path):
    text = open(path).read()
    out = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.M)
    if not m:
        raise SystemExit(f"no request count in wrk output {path}:\n{text}")
    out["requests"] = int(m.group(1))
    out["wrk_seconds"] = to_us(m.group(2) + m.group(3)) / 1e6
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}_us"] = to_us(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return out


# --- one round --------------------------------------------------------------

def row(args):
    # row PROXY ROUND WRKFILE CPU0_BEFORE CPU0_AFTER PROC_BEFORE PROC_AFTER IDLE_PCT
    proxy, rnd, wrkfile = args[0], int(args[1]), args[2]
    c0 = [int(x) for x in args[3].split()]
    c1 = [int(x) for x in args[4].split()]
    p0, p1 = json.loads(args[5]), json.loads(args[6])
    q = [float(x) for x in args[7].split()]
    w = parse_wrk(wrkfile)
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = (c1[0] - c0[0]) / hz
    window_s = (c1[1] - c0[1]) / hz
    req = max(w["requests"], 1)
    r = {
        "proxy": proxy,
        "round": rnd,
        **w,
        "cpu0_busy_s": busy_s,
        "cpu0_window_s": window_s,
        "cpu0_busy_pct": 100.0 * busy_s / window_s if window_s else None,
        "cpu_us_per_req": busy_s * 1e6 / req,
        "proc_cpu_us_per_req": (p1["run_ns"] - p0["run_ns"]) / 1e3 / req,
        "vol_cs_per_req": (p1["vol_cs"] - p0["vol_cs"]) / req,
        "invol_cs_per_req": (p1["invol_cs"] - p0["invol_cs"]) / req,
        "rss_kb": p1["rss_kb"],
        "cpu0_busy_pct_before": q[0],
        "cpu1_busy_pct_before": q[1],
        "waited_for_quiet_s": q[2],
    }
    print(json.dumps(r))


# --- idle connections --------------------------------------------------------

def idle(args):
    host, port, n = args[0], int(args[1]), int(args[2])
    pids = [int(p) for p in args[3:]]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 100
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = {p: proc_tree(p)["rss_kb"] for p in pids}
    req = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    socks, failed = [], 0
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect((host, port))
            s.sendall(req)
            got = b""
            # read the whole (small) response: head + Content-Length body
            while b"\r\n\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("closed")
                got += chunk
            head, _, body = got.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(body) < need:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("closed")
                body += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                raise OSError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            socks.append(s)
        except OSError as e:
            failed += 1
            if failed <= 3:
                print(f"idle: connection {len(socks) + failed}: {e}", file=sys.stderr)
            s.close()
    open_s = time.monotonic() - t0
    time.sleep(2)  # let the proxy settle (pools, timers)
    # how many are still open: a closed one is readable (EOF)
    closed = 0
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    for fd, _ in poller.poll(0):
        s = by_fd[fd]
        try:
            s.setblocking(False)
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    after = {}
    for p in pids:
        t = proc_tree(p)
        fds = 0
        for q in t["pids"]:
            try:
                fds += len(os.listdir(f"/proc/{q}/fd"))
            except OSError:
                pass
        after[p] = {"rss_kb": t["rss_kb"], "fds": fds}
    for s in socks:
        s.close()
    print(json.dumps({
        "connections": n,
        "established": len(socks),
        "failed": failed,
        "closed_by_peer": closed,
        "open_seconds": round(open_s, 2),
        "rss_kb_before": sum(before.values()),
        "rss_kb": sum(a["rss_kb"] for a in after.values()),
        "proxy_fds": sum(a["fds"] for a in after.values()),
    }))


# --- report ------------------------------------------------------------------

METRICS = [
    ("rps", "requests/s", "{:,.0f}"),
    ("p50_us", "p50 (µs)", "{:,.0f}"),
    ("p99_us", "p99 (µs)", "{:,.0f}"),
    ("cpu_us_per_req", "CPU 0 µs/req", "{:.2f}"),
    ("proc_cpu_us_per_req", "proxy process µs/req", "{:.2f}"),
    ("cpu0_busy_pct", "CPU 0 busy %", "{:.0f}"),
    ("vol_cs_per_req", "vol. ctx sw/req", "{:.3f}"),
    ("rss_kb", "RSS (MB)", None),
]


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def spread(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return (min(vals), max(vals)) if vals else (None, None)


def report(args):
    src, out_json, out_md = args[0], args[1], args[2]
    meta_path = args[3] if len(args) > 3 else None
    rows, idle_rows, meta = [], [], {}
    for line in open(src):
        line = line.strip()
        if not line:
            continue
        obj = json.loads(line)
        kind = obj.pop("kind", "round")
        if kind == "idle":
            idle_rows.append(obj)
        elif kind == "meta":
            meta.update(obj)
        else:
            rows.append(obj)
    proxies = []
    for r in rows:
        if r["proxy"] not in proxies:
            proxies.append(r["proxy"])
    summary = {}
    for p in proxies:
        pr = [r for r in rows if r["proxy"] == p]
        summary[p] = {k: med(pr, k) for k, _, _ in METRICS}
        summary[p]["rounds"] = len(pr)
        summary[p]["spread"] = {k: spread(pr, k) for k, _, _ in METRICS}
        summary[p]["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in pr)
    ratios = {}
    if "sluice" in summary:
        s = summary["sluice"]
        for peer in proxies:
            if peer == "sluice":
                continue
            q = summary[peer]
            ratios[peer] = {
                k: (s[k] / q[k]) if s.get(k) and q.get(k) else None
                for k in ("cpu_us_per_req", "proc_cpu_us_per_req", "rps", "p99_us", "rss_kb")
            }
    # The same ratios taken within each round (sluice and the peer measured
    # back to back), then the median over rounds: a machine whose speed
    # drifts between rounds moves both sides of a round's ratio together.
    round_ratios = {}
    if "sluice" in summary:
        for peer in proxies:
            if peer == "sluice":
                continue
            per = {k: [] for k in ("cpu_us_per_req", "rps", "p99_us")}
            for rnd in sorted({r["round"] for r in rows}):
                a = [r for r in rows if r["proxy"] == "sluice" and r["round"] == rnd]
                b = [r for r in rows if r["proxy"] == peer and r["round"] == rnd]
                if not a or not b:
                    continue
                for k in per:
                    if a[0].get(k) and b[0].get(k):
                        per[k].append(a[0][k] / b[0][k])
            round_ratios[peer] = {k: (statistics.median(v) if v else None, v)
                                  for k, v in per.items()}
    doc = {"meta": meta, "rounds": rows, "summary": summary, "ratios": ratios,
           "round_ratios": {p: {k: m for k, (m, _) in r.items()} for p, r in round_ratios.items()},
           "idle_connections": idle_rows}
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    md = []
    md.append(f"### HTTP/1.1 keep-alive, {meta.get('body_bytes', '?')}-byte response "
              f"(median of {meta.get('rounds', '?')} rounds × {meta.get('duration', '?')} s)\n")
    if meta:
        md.append(f"Machine: {meta.get('cpu', '?')}, {meta.get('nproc', '?')} CPUs, "
                  f"kernel {meta.get('kernel', '?')}. "
                  f"{meta.get('versions', '')}\n")
        md.append(f"Load: `{meta.get('wrk_cmd', 'wrk')}` on CPU 1 with the nginx backend; "
                  f"each proxy alone on CPU 0 with one worker.\n")
    hdr = ["proxy"] + [label for _, label, _ in METRICS]
    md.append("| " + " | ".join(hdr) + " |")
    md.append("|" + "---|" * len(hdr))
    for p in proxies:
        cells = [p]
        for k, _, fmt in METRICS:
            v = summary[p][k]
            if v is None:
                cells.append("–")
            elif k == "rss_kb":
                cells.append(f"{v / 1024:.1f}")
            else:
                cells.append(fmt.format(v))
        md.append("| " + " | ".join(cells) + " |")
    md.append("")
    if ratios:
        md.append("| sluice ÷ | CPU 0 µs/req | proxy process µs/req | requests/s | p99 | RSS |")
        md.append("|---|---|---|---|---|---|")
        for peer, r in ratios.items():
            cells = [peer] + [("–" if r[k] is None else f"{r[k]:.2f}×")
                              for k in ("cpu_us_per_req", "proc_cpu_us_per_req", "rps", "p99_us", "rss_kb")]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    if round_ratios:
        md.append("Within each round, then the median over rounds (sluice ÷ peer; "
                  "per-round values in brackets):\n")
        md.append("| sluice ÷ | CPU 0 µs/req | requests/s | p99 |")
        md.append("|---|---|---|---|")
        for peer, r in round_ratios.items():
            cells = [peer]
            for k in ("cpu_us_per_req", "rps", "p99_us"):
                m, v = r[k]
                cells.append("–" if m is None else
                             f"{m:.2f}× [{', '.join(f'{x:.2f}' for x in v)}]")
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    errs = {p: summary[p]["errors"] for p in proxies if summary[p]["errors"]}
    if errs:
        md.append("Errors (non-2xx or socket errors, all rounds): "
                  + ", ".join(f"{p} {n}" for p, n in errs.items()) + "\n")
    md.append("Spread (min–max over rounds) of CPU 0 µs/req: "
              + "; ".join(f"{p} {summary[p]['spread']['cpu_us_per_req'][0]:.2f}–"
                          f"{summary[p]['spread']['cpu_us_per_req'][1]:.2f}"
                          for p in proxies) + ".\n")
    if idle_rows:
        md.append("Idle keep-alive client connections (one request each, then held open):\n")
        md.append("| proxy | connections held | RSS before (MB) | RSS with connections (MB) | proxy fds |")
        md.append("|---|---|---|---|---|")
        for r in idle_rows:
            held = r["established"] - r["closed_by_peer"]
            md.append(f"| {r['proxy']} | {held:,} of {r['connections']:,} | "
                      f"{r['rss_kb_before'] / 1024:.1f} | {r['rss_kb'] / 1024:.1f} | {r['proxy_fds']:,} |")
        md.append("")
    md.append("Per round:\n")
    md.append("| round | proxy | requests/s | p99 (µs) | CPU 0 µs/req | proxy process µs/req | CPU 0 busy % | CPU 0 / 1 busy % before | RSS (MB) | errors |")
    md.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        md.append(f"| {r['round']} | {r['proxy']} | {r['rps']:,.0f} | {r['p99_us']:,.0f} | "
                  f"{r['cpu_us_per_req']:.2f} | {r['proc_cpu_us_per_req']:.2f} | "
                  f"{r['cpu0_busy_pct']:.0f} | {r['cpu0_busy_pct_before']:.0f} / {r['cpu1_busy_pct_before']:.0f} | "
                  f"{r['rss_kb'] / 1024:.1f} | {r['non_2xx'] + r['socket_errors']} |")
    md.append("")
    with open(out_md, "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        socks = []
        for _ in range(int(args[0])):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
        for s in socks:
            s.close()
    elif cmd == "cpu":
        print(*cpu_jiffies(int(args[0])))
    elif cmd == "proc":
        print(json.dumps(proc_tree(int(args[0]))))
    elif cmd == "quiet":
        quiet(args)
    elif cmd == "wrk":
        print(json.dumps(parse_wrk(args[0])))
    elif cmd == "row":
        row(args)
    elif cmd == "idle":
        idle(args)
    elif cmd == "report":
        report(args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
