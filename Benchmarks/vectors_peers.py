"""The Python side of Benchmarks/vectors.sh.

  generate  clustered Gaussian base and query vectors (fixed seed) and their exact
            k nearest neighbours by brute force (numpy), as raw little-endian files
  run       recall@k and single-thread QPS of hnswlib (PyPI) or faiss-cpu IndexHNSWFlat
            on those files, one JSON object per ef (the same shape bench-vectors prints)
  http      the same through a running kernel's HTTP API (the Intelligence plugin's
            /p/<portal>/vectors/v1 routes): creates a collection, upserts the base vectors
            in batches, then per ef queries every query vector with 1 client (sequential)
            and with N concurrent clients (threads, one keep-alive connection each); one
            JSON object per ef and client count, "library": "http"
  report    the table of all results: per size, the smallest ef at which MeltyBase and
            hnswlib both reach the target recall, and QPS ratios against hnswlib; then the
            HTTP API's figures beside the in-process index and hnswlib
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

import numpy as np


def generate(args):
    rng = np.random.default_rng(args.seed)
    centers = rng.normal(0.0, 1.0, size=(args.clusters, args.dimension)).astype(np.float32)

    def draw(count):
        which = rng.integers(0, args.clusters, size=count)
        noise = rng.normal(0.0, args.spread, size=(count, args.dimension)).astype(np.float32)
        return (centers[which] + noise).astype(np.float32)

    base = draw(args.n)
    queries = draw(args.queries)
    truth = exact_neighbours(base, queries, args.k)
    os.makedirs(args.out, exist_ok=True)
    base.astype("<f4").tofile(os.path.join(args.out, "base.f32"))
    queries.astype("<f4").tofile(os.path.join(args.out, "queries.f32"))
    truth.astype("<i8").tofile(os.path.join(args.out, "truth.i64"))
    print(f"wrote {args.n} base and {args.queries} query vectors of dimension {args.dimension} to {args.out}")


def exact_neighbours(base, queries, k):
    """The k nearest base rows (squared L2) of every query, nearest first, in float64."""
    base64 = base.astype(np.float64)
    base_norms = (base64 * base64).sum(axis=1)
    result = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 100):
        chunk = queries[start:start + 100].astype(np.float64)
        distances = base_norms[None, :] - 2.0 * chunk @ base64.T + (chunk * chunk).sum(axis=1)[:, None]
        nearest = np.argpartition(distances, k, axis=1)[:, :k]
        order = np.take_along_axis(distances, nearest, axis=1).argsort(axis=1)
        result[start:start + len(chunk)] = np.take_along_axis(nearest, order, axis=1)
    return result


def load(args):
    base = np.fromfile(args.base, dtype="<f4").reshape(-1, args.dimension)
    queries = np.fromfile(args.queries, dtype="<f4").reshape(-1, args.dimension)
    truth = np.fromfile(args.truth, dtype="<i8").reshape(-1, args.k)
    return np.ascontiguousarray(base), np.ascontiguousarray(queries), truth


def recall(found, truth):
    hits = sum(len(set(row[row >= 0].tolist()) & set(expected.tolist())) for row, expected in zip(found, truth))
    return hits / truth.size


def run(args):
    base, queries, truth = load(args)
    efs = [int(ef) for ef in args.efs.split(",")]
    if args.library == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="l2", dim=args.dimension)
        index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=100)
        index.set_num_threads(1)
        started = time.perf_counter()
        index.add_items(base, np.arange(len(base)), num_threads=1)
        build = time.perf_counter() - started

        def search(ef):
            index.set_ef(ef)
            labels, _ = index.knn_query(queries, k=args.k, num_threads=1)
            return labels

        version = hnswlib.__version__ if hasattr(hnswlib, "__version__") else "0.8.0"
    else:
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.IndexHNSWFlat(args.dimension, args.m)
        index.hnsw.efConstruction = args.ef_construction
        started = time.perf_counter()
        index.add(base)
        build = time.perf_counter() - started

        def search(ef):
            index.hnsw.efSearch = ef
            _, labels = index.search(queries, args.k)
            return labels

        version = faiss.__version__

    for ef in efs:
        rates = []
        found = None
        for _ in range(args.repeats):
            started = time.perf_counter()
            labels = search(ef)
            rates.append(len(queries) / (time.perf_counter() - started))
            found = labels if found is None else found
        print(json.dumps({
            "library": args.library, "version": version, "n": len(base), "ef": ef,
            "recall": round(recall(found, truth), 4), "qps": round(statistics.median(rates), 1),
            "qps_runs": [round(rate, 1) for rate in rates], "build_s": round(build, 2),
        }), flush=True)


class Client:
    """One keep-alive HTTP/1.1 connection to the kernel (reconnects once if the server
    closed it between requests)."""

    def __init__(self, url, key):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port, self.prefix = parsed.hostname, parsed.port or 80, parsed.path.rstrip("/")
        self.headers = {"apikey": key, "Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.connection = None

    def post(self, path, body, expect=(200,)):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self.connection.request("POST", self.prefix + path, body=data, headers=self.headers)
                response = self.connection.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                continue
            if response.status not in expect:
                raise SystemExit(f"POST {self.prefix + path} answered {response.status}: {payload[:500]!r}")
            if response.getheader("connection", "").lower() == "close":
                self.connection.close()
                self.connection = None
            return json.loads(payload) if payload else None


def http_bench(args):
    base, queries, truth = load(args)
    efs = [int(ef) for ef in args.efs.split(",")]
    clients = sorted({int(c) for c in args.clients.split(",")})
    name = f"bench_{len(base)}"
    client = Client(args.url, args.key)
    client.post("/collections", {"name": name, "dimension": args.dimension, "metric": "l2"}, expect=(201,))

    # The same rows in the same order as the in-process runs: entry id = row number.
    rows = base.tolist()
    started = time.perf_counter()
    for start in range(0, len(rows), args.batch):
        entries = [{"id": str(i), "vector": rows[i]} for i in range(start, min(start + args.batch, len(rows)))]
        answer = client.post(f"/collections/{name}/upsert", {"entries": entries})
        if answer.get("upserted") != len(entries):
            raise SystemExit(f"upsert of rows {start}.. answered {answer}")
    load_s = time.perf_counter() - started
    print(f"http: upserted {len(rows)} vectors in {load_s:.1f} s ({len(rows) / load_s:,.0f}/s, "
          f"batches of {args.batch})", file=sys.stderr, flush=True)

    vectors = [json.dumps(row) for row in queries.tolist()]
    path = f"/collections/{name}/query"

    def answer_ids(answer):
        return [int(result["id"]) for result in answer["results"]]

    # Unmeasured warm-up (connections, the first query's index load, caches).
    for vector in vectors[:50]:
        client.post(path, f'{{"vector": {vector}, "k": {args.k}, "ef": {efs[0]}}}')

    def one_pass(ef, count):
        bodies = [f'{{"vector": {vector}, "k": {args.k}, "ef": {ef}}}' for vector in vectors]
        found = [None] * len(bodies)
        latencies = [0.0] * len(bodies)
        failures = []
        connections = [client] + [Client(args.url, args.key) for _ in range(count - 1)]

        def worker(index):
            try:
                for position in range(index, len(bodies), count):
                    sent = time.perf_counter()
                    found[position] = answer_ids(connections[index].post(path, bodies[position]))
                    latencies[position] = time.perf_counter() - sent
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
        started, cpu = time.perf_counter(), time.process_time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        for extra in connections[1:]:
            if extra.connection is not None:
                extra.connection.close()
        if failures:
            raise SystemExit(f"a query failed: {failures[0]}")
        latencies.sort()
        return found, len(bodies) / elapsed, {
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
            "client_cpu": round(cpu / elapsed, 2),  # the benchmark client's CPU, in cores
        }

    for ef in efs:
        for count in clients:
            rates, labels, extra = [], None, {}
            for _ in range(args.repeats):
                found, rate, extra = one_pass(ef, count)
                rates.append(rate)
                labels = found if labels is None else labels
            padded = np.array([row + [-1] * (args.k - len(row)) for row in labels], dtype=np.int64)
            print(json.dumps({
                "library": "http", "build": args.build, "n": len(base), "ef": ef, "clients": count,
                "recall": round(recall(padded, truth), 4), "qps": round(statistics.median(rates), 1),
                "qps_runs": [round(rate, 1) for rate in rates], "build_s": round(load_s, 2), **extra,
            }), flush=True)


LIBRARIES = ("meltybase", "hnswlib", "faiss")


def pooled(rows):
    """Rows of one library, size and ef from all rounds: mean recall, median and best QPS."""
    runs = [rate for row in rows for rate in row["qps_runs"]]
    builds = [row["build_s"] for row in rows if "build_s" in row]
    return {
        "recall": statistics.mean(row["recall"] for row in rows),
        "qps": statistics.median(runs),
        "best": max(runs),
        "passes": len(runs),
        "build_s": statistics.median(builds) if builds else None,
    }


def report(args):
    rows = [json.loads(line) for line in open(args.results) if line.strip().startswith("{")]
    lines = []
    for n in sorted({row["n"] for row in rows}):
        at_n = [row for row in rows if row["n"] == n and row["library"] != "http"]
        http_rows = [row for row in rows if row["n"] == n and row["library"] == "http"]
        libraries = [lib for lib in LIBRARIES if any(row["library"] == lib for row in at_n)]
        by = {}
        for lib in libraries:
            for ef in {row["ef"] for row in at_n if row["library"] == lib}:
                by[(lib, ef)] = pooled([row for row in at_n if row["library"] == lib and row["ef"] == ef])
        efs = sorted({row["ef"] for row in at_n})
        passes = max(entry["passes"] for entry in by.values())
        lines.append(f"\n### {n:,} vectors (QPS: median of {passes} passes, best in brackets)\n")
        lines.append("| ef | " + " | ".join(f"{lib} recall@10 | {lib} QPS" for lib in libraries) + " | meltybase / hnswlib |")
        lines.append("|---:|" + "---:|---:|" * len(libraries) + "---:|")
        chosen = None
        for ef in efs:
            cells = []
            for lib in libraries:
                entry = by.get((lib, ef))
                cells.append(f"{entry['recall']:.4f} | {entry['qps']:,.0f} ({entry['best']:,.0f})" if entry else "- | -")
            ours, peer = by.get(("meltybase", ef)), by.get(("hnswlib", ef))
            ratio = f"{ours['qps'] / peer['qps']:.2f}x" if ours and peer else "-"
            lines.append(f"| {ef} | " + " | ".join(cells) + f" | {ratio} |")
            if chosen is None and ours and peer and min(ours["recall"], peer["recall"]) >= args.target:
                chosen = ef
        builds = [f"{lib} {by[(lib, efs[0])]['build_s']:.1f} s" for lib in libraries
                  if (lib, efs[0]) in by and by[(lib, efs[0])]["build_s"] is not None]
        lines.append("\nBuild, single thread (median): " + ", ".join(builds) + ".")
        if chosen is None:
            lines.append(f"\nNo ef in the sweep gives recall@10 >= {args.target} for both meltybase and hnswlib.")
            lines.extend(http_report(http_rows, by, chosen))
            continue
        ours, peer = by[("meltybase", chosen)], by[("hnswlib", chosen)]
        summary = (f"\nAt ef={chosen} (the smallest with recall@10 >= {args.target} for both): meltybase "
                   f"{ours['qps']:,.0f} QPS (recall {ours['recall']:.4f}), hnswlib {peer['qps']:,.0f} QPS "
                   f"(recall {peer['recall']:.4f}): **{ours['qps'] / peer['qps']:.2f}x hnswlib** "
                   f"(best passes: {ours['best'] / peer['best']:.2f}x)")
        faiss_row = by.get(("faiss", chosen))
        if faiss_row:
            summary += (f"; faiss {faiss_row['qps']:,.0f} QPS (recall {faiss_row['recall']:.4f}): "
                        f"{ours['qps'] / faiss_row['qps']:.2f}x faiss")
        lines.append(summary + ".")
        lines.extend(http_report(http_rows, by, chosen))
    print("\n".join(lines))


def http_report(http_rows, by, chosen):
    """The HTTP API's rows of one size: recall@10 and QPS per client count, beside the
    in-process index (meltybase) and hnswlib of the same run, with ratios to hnswlib."""
    if not http_rows:
        return []
    builds = sorted({row.get("build", "?") for row in http_rows})
    counts = sorted({row["clients"] for row in http_rows})
    efs = sorted({row["ef"] for row in http_rows})
    cell = {}
    for count in counts:
        for ef in efs:
            matching = [row for row in http_rows if row["clients"] == count and row["ef"] == ef]
            if matching:
                cell[(count, ef)] = pooled(matching)
                p50s = [row["p50_ms"] for row in matching if "p50_ms" in row]
                cell[(count, ef)]["p50"] = statistics.median(p50s) if p50s else None
    label = lambda count: f"HTTP {count} client{'s' if count > 1 else ''}"  # noqa: E731
    lines = [f"\nHTTP API (POST /p/<portal>/vectors/v1/collections/<c>/query, kernel {'/'.join(builds)} build, "
             f"same vectors and ground truth; clients = concurrent keep-alive connections, "
             f"1 = sequential, latency-bound; median latency per query in brackets):\n"]
    header = "| ef | " + " | ".join(f"{label(c)} recall@10 | {label(c)} QPS" for c in counts)
    header += " | in-process meltybase QPS | hnswlib QPS | " + " | ".join(f"{label(c)} / hnswlib" for c in counts) + " |"
    lines.append(header)
    lines.append("|---:|" + "---:|---:|" * len(counts) + "---:|---:|" + "---:|" * len(counts))
    for ef in efs:
        cells = []
        for count in counts:
            entry = cell.get((count, ef))
            latency = f" ({entry['p50']:.1f} ms)" if entry and entry["p50"] is not None else ""
            cells.append(f"{entry['recall']:.4f} | {entry['qps']:,.0f}{latency}" if entry else "- | -")
        ours, peer = by.get(("meltybase", ef)), by.get(("hnswlib", ef))
        ratios = [f"{cell[(c, ef)]['qps'] / peer['qps']:.3f}x" if peer and (c, ef) in cell else "-" for c in counts]
        inprocess = f"{ours['qps']:,.0f}" if ours else "-"
        hnswlib = f"{peer['qps']:,.0f}" if peer else "-"
        lines.append(f"| {ef} | " + " | ".join(cells) + f" | {inprocess} | {hnswlib} | " + " | ".join(ratios) + " |")
    loads = [row["build_s"] for row in http_rows if "build_s" in row]
    n = http_rows[0]["n"]
    if loads:
        lines.append(f"\nLoad over HTTP (upserts in batches, index built as they arrive): {statistics.median(loads):.1f} s "
                     f"({n / statistics.median(loads):,.0f} vectors/s).")
    if chosen is not None:
        peer = by.get(("hnswlib", chosen))
        parts = []
        for count in counts:
            entry = cell.get((count, chosen))
            if entry and peer:
                parts.append(f"{label(count)} {entry['qps']:,.0f} QPS (recall {entry['recall']:.4f}, "
                             f"{entry['qps'] / peer['qps']:.3f}x hnswlib)")
        if parts:
            lines.append(f"\nAt ef={chosen}: " + "; ".join(parts) + ".")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    g = commands.add_parser("generate")
    g.add_argument("--n", type=int, required=True)
    g.add_argument("--dimension", type=int, default=128)
    g.add_argument("--queries", type=int, default=1000)
    g.add_argument("--k", type=int, default=10)
    g.add_argument("--clusters", type=int, default=100)
    g.add_argument("--spread", type=float, default=0.5)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--out", required=True)

    r = commands.add_parser("run")
    r.add_argument("--library", choices=["hnswlib", "faiss"], required=True)
    for name in ("--base", "--queries", "--truth"):
        r.add_argument(name, required=True)
    r.add_argument("--dimension", type=int, required=True)
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--m", type=int, default=16)
    r.add_argument("--ef-construction", type=int, default=200)
    r.add_argument("--efs", default="16,32,64,128")
    r.add_argument("--repeats", type=int, default=3)

    h = commands.add_parser("http")
    h.add_argument("--url", required=True, help="the portal's vectors API, http://host:port/p/<portal>/vectors/v1")
    h.add_argument("--key", required=True, help="the portal's service_role key")
    for name in ("--base", "--queries", "--truth"):
        h.add_argument(name, required=True)
    h.add_argument("--dimension", type=int, required=True)
    h.add_argument("--k", type=int, default=10)
    h.add_argument("--efs", default="16,32,64,128")
    h.add_argument("--clients", default="1,8", help="comma-separated concurrent client counts")
    h.add_argument("--batch", type=int, default=1000, help="entries per upsert (the plugin takes 1 to 1,000)")
    h.add_argument("--repeats", type=int, default=1)
    h.add_argument("--build", default="?", help="the kernel's build (release or debug), for the report")

    p = commands.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--target", type=float, default=0.95)

    args = parser.parse_args()
    {"generate": generate, "run": run, "http": http_bench, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
