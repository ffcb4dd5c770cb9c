"""The Python side of Benchmarks/vectors.sh.

  generate  clustered Gaussian base and query vectors (fixed seed) and their exact
            k nearest neighbours by brute force (numpy), as raw little-endian files
  run       recall@k and single-thread QPS of hnswlib (PyPI) or faiss-cpu IndexHNSWFlat
            on those files, one JSON object per ef (the same shape bench-vectors prints)
  report    the table of all results: per size, the smallest ef at which MeltyBase and
            hnswlib both reach the target recall, and QPS ratios against hnswlib
"""

import argparse
import json
import os
import statistics
import sys
import time

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


LIBRARIES = ("meltybase", "hnswlib", "faiss", "http")


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
        at_n = [row for row in rows if row["n"] == n]
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
    print("\n".join(lines))


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

    p = commands.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--target", type=float, default=0.95)

    args = parser.parse_args()
    {"generate": generate, "run": run, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
