#!/usr/bin/env python3
"""Sentient SQL's evaluation: how often the first checked fix is right.

For each case of Benchmarks/sql-eval/cases.json: the failing statement runs through the SQL
console (inside BEGIN, so nothing stays) to get its error; POST /sql/v1/diagnose gets the
diagnosis and the fixes; the first fix runs (inside BEGIN, with the case's `check` query
after it for writes) and its rows are compared with the case's expected rows (given, or
the rows of its `reference` statement), order ignored.

    .venv/bin/python Benchmarks/sql_eval.py                    # starts its own kernel
    .venv/bin/python Benchmarks/sql_eval.py --url http://127.0.0.1:8080/p/shop --service-key KEY
    .venv/bin/python Benchmarks/sql_eval.py --with-model ...   # also the model's fixes (portal provider needed)

The sample schema (sql-eval/schema.sql) is loaded into the portal first: it drops and
recreates its tables (orders, products, customers, countries, todos, orgs, memberships,
projects, reporting.*), so point --url only at a scratch portal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BEGIN = "BEGIN; "


class Console:
    def __init__(self, base: str, key: str):
        self.base = base.rstrip("/")
        self.http = httpx.Client(timeout=60.0, headers={"apikey": key, "Authorization": f"Bearer {key}"})

    def sql(self, query: str) -> httpx.Response:
        return self.http.post(f"{self.base}/sql/v1/query", json={"query": query})

    def diagnose(self, statement: str, error: dict | None, use_model: bool) -> httpx.Response:
        body = {"query": statement, "use_model": use_model}
        if error:
            body["error"] = error
        return self.http.post(f"{self.base}/sql/v1/diagnose", json=body)


def canonical(rows: list) -> list[str]:
    def value(item):
        # numeric comes back as text ("4.00"), counts as integers: compare numbers as numbers.
        if isinstance(item, str):
            try:
                return float(item)
            except ValueError:
                return item
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            return float(item)
        return item

    return sorted(json.dumps([value(item) for item in row]) for row in rows)


def rows_of(console: Console, statement: str, check: str | None) -> list | None:
    script = BEGIN + statement.rstrip().rstrip(";") + ";" + (" " + check if check else "")
    response = console.sql(script)
    if response.status_code != 200:
        return None
    return response.json()["rows"]


def expected_rows(console: Console, case: dict) -> list:
    if "rows" in case:
        return case["rows"]
    rows = rows_of(console, case["reference"], None)
    if rows is None:
        raise SystemExit(f"case {case['id']}: the reference statement fails: {console.sql(case['reference']).text}")
    return rows


def evaluate(console: Console, use_model: bool) -> dict:
    data = json.loads((HERE / "sql-eval" / "cases.json").read_text())
    schema = (HERE / "sql-eval" / data["schema"]).read_text()
    loaded = console.sql(schema)
    if loaded.status_code != 200:
        raise SystemExit(f"cannot load the sample schema: {loaded.status_code} {loaded.text}")
    results = []
    for case in data["cases"]:
        failing = console.sql(BEGIN + case["statement"])
        if failing.status_code == 200:
            results.append({"id": case["id"], "category": case["category"], "set": case.get("set", "first"), "fixed": False,
                            "why": "broken case: the statement does not fail"})
            continue
        error = failing.json()
        if error.get("position"):
            error["position"] = max(1, error["position"] - len(BEGIN))
        want = canonical(expected_rows(console, case))
        answer = console.diagnose(case["statement"], error, use_model)
        outcome = {"id": case["id"], "category": case["category"], "set": case.get("set", "first"), "status": answer.status_code}
        if answer.status_code != 200:
            outcome.update(fixed=False, why=f"diagnose answered {answer.status_code}: {answer.text[:200]}")
            results.append(outcome)
            continue
        body = answer.json()
        outcome["diagnosed_as"] = body["diagnosis"]["category"]
        fixes = body["fixes"]
        catalog = [fix for fix in fixes if fix.get("source") == "catalog"]
        model = [fix for fix in fixes if fix.get("source") == "model"]

        def judge(candidates: list) -> tuple[bool, str]:
            if not candidates:
                return False, "no fix"
            got = rows_of(console, candidates[0]["statement"], case.get("check"))
            if got is None:
                return False, "the fix fails when run"
            return (canonical(got) == want), ("" if canonical(got) == want else f"rows differ: {got[:3]}")

        outcome["fixed"], outcome["why"] = judge(catalog)
        outcome["fix"] = catalog[0]["statement"] if catalog else None
        if use_model:
            outcome["model_used"] = body["model"].get("used", False)
            outcome["model_fixed"], outcome["model_why"] = judge(model)
        results.append(outcome)
    return {"results": results}


def report(summary: dict, use_model: bool) -> None:
    results = summary["results"]
    by_category = defaultdict(list)
    for result in results:
        by_category[result["category"]].append(result)
    print(f"{'category':24} {'cases':>5} {'fixed':>5} {'accuracy':>9}" + ("   model" if use_model else ""))
    for category, items in sorted(by_category.items()):
        fixed = sum(1 for item in items if item["fixed"])
        line = f"{category:24} {len(items):5} {fixed:5} {100.0 * fixed / len(items):8.1f}%"
        if use_model:
            line += f"   {sum(1 for item in items if item.get('model_fixed'))}"
        print(line)
    fixed = sum(1 for item in results if item["fixed"])
    print(f"{'total':24} {len(results):5} {fixed:5} {100.0 * fixed / len(results):8.1f}%")
    for name in sorted({item.get("set", "first") for item in results}):
        part = [item for item in results if item.get("set", "first") == name]
        done = sum(1 for item in part if item["fixed"])
        print(f"{'  set ' + name:24} {len(part):5} {done:5} {100.0 * done / len(part):8.1f}%")
    if use_model:
        model_fixed = sum(1 for item in results if item.get("model_fixed"))
        either = sum(1 for item in results if item.get("model_fixed") or item["fixed"])
        print(f"model: {model_fixed}/{len(results)} ({100.0 * model_fixed / len(results):.1f}%), catalog or model: {either}/{len(results)}")
    print("\nnot fixed:")
    for item in results:
        if not item["fixed"]:
            print(f"  {item['id']}: {item['why']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the portal's base URL (http://host:port/p/<portal>); default: start a kernel")
    parser.add_argument("--service-key", help="the portal's service_role key (with --url)")
    parser.add_argument("--with-model", action="store_true", help="also judge the model's fixes (the portal needs a provider)")
    parser.add_argument("--json", help="write the per-case results here")
    arguments = parser.parse_args()
    kernel = None
    if arguments.url:
        if not arguments.service_key:
            parser.error("--url needs --service-key")
        console = Console(arguments.url, arguments.service_key)
    else:
        sys.path.insert(0, str(HERE.parent / "Tests" / "Integration" / "intelligence"))
        import ikit  # noqa: E402

        kernel = ikit.start_kernel()
        portal = kernel.create_portal("evalsql", plugins=ikit.PLUGINS)
        console = Console(portal.base, portal.service)
    try:
        summary = evaluate(console, arguments.with_model)
    finally:
        if kernel is not None:
            failures = kernel and __import__("dbkit").stop_and_check(kernel)
            if failures:
                print("\n".join(failures), file=sys.stderr)
    report(summary, arguments.with_model)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
