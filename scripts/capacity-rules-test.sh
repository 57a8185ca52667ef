#!/usr/bin/env bash
# Checks the capacity-planning monitoring files of docs/capacity.md:
#   1. promtool check rules on docs/capacity/ringlb.rules.yml (syntax, PromQL, names);
#   2. promtool test rules on docs/capacity/ringlb.rules.test.yml (recorded values and alerts
#      against synthetic scrapes, every expected value exact);
#   3. the Grafana dashboard docs/capacity/grafana-dashboard.json: it parses, every panel
#      target's expr is valid PromQL (one recording rule per expr in a temporary rules file,
#      through promtool check rules), and every name an expr reads (the rules file's too) is a
#      recording rule of ringlb.rules.yml or a metric ringlb exposes (the string literals of
#      src/admin/*.rs, process_cpu_seconds_total) or the sweep's ringlb_sweep_max_rate.
# Needs promtool (Debian: prometheus) and python3 with PyYAML (Debian: python3-yaml); fails
# when either is missing, never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "capacity-rules-test: FAILED: $*" >&2
  exit 1
}

command -v promtool >/dev/null 2>&1 ||
  die "promtool not found (Debian: apt-get install prometheus; or put promtool from a Prometheus release on PATH)"
command -v python3 >/dev/null 2>&1 || die "python3 not found"
python3 -c 'import yaml' 2>/dev/null || die "python3 cannot import yaml (Debian: apt-get install python3-yaml)"

rules=docs/capacity/ringlb.rules.yml
tests=docs/capacity/ringlb.rules.test.yml
dashboard=docs/capacity/grafana-dashboard.json
for f in "$rules" "$tests" "$dashboard" src/admin/metrics.rs; do
  [ -f "$f" ] || die "$f is missing"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== promtool check rules $rules"
promtool check rules "$rules" || die "promtool check rules $rules"

echo "== promtool test rules $tests"
promtool test rules "$tests" || die "promtool test rules $tests"

echo "== names read by $rules and $dashboard; the dashboard's expressions"
python3 - "$rules" "$tests" "$dashboard" "$tmp" <<'PY' || die "an unknown name, or a malformed dashboard (see above)"
import glob, json, re, sys
import yaml

rules_path, tests_path, dash_path, tmp = sys.argv[1:5]

def fail(msg):
    print("  " + msg, file=sys.stderr)
    sys.exit(1)

# Recording rules and the rules file's own expressions.
with open(rules_path) as f:
    groups = yaml.safe_load(f)["groups"]
recorded, rule_exprs = set(), []
n_rules = 0
for g in groups:
    for r in g["rules"]:
        n_rules += 1
        if "record" in r:
            recorded.add(r["record"])
        rule_exprs.append((f"{rules_path}: {r.get('record') or r.get('alert')}", str(r["expr"])))

# Metric names ringlb exposes: the string literals of the admin sources, with the histogram
# series suffixes for the _seconds families, plus the two that come from elsewhere.
exposed = set()
for src in sorted(glob.glob("src/admin/*.rs")):
    with open(src) as f:
        exposed |= set(re.findall(r'"((?:ringlb|process)_[a-z0-9_]+)', f.read()))
if "ringlb_request_duration_seconds" not in exposed:
    fail("no ringlb_request_duration_seconds among the string literals of src/admin/*.rs")
exposed |= {n + s for n in list(exposed) if n.endswith("_seconds") for s in ("_bucket", "_sum", "_count")}
exposed |= {"process_cpu_seconds_total", "ringlb_sweep_max_rate"}
known = exposed | recorded

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan"}
TOKEN = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*"
                   r"|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")

def names(expr):
    """Metric names an expression reads (not functions, keywords, labels or strings)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    out = set()
    for m in TOKEN.finditer(e):
        name, call = m.group(1), m.group(2)
        if name and not call and name.lower() not in KEYWORDS:
            out.add(name)
    return out

def check_names(where, expr):
    unknown = sorted(n for n in names(expr) if n not in known)
    if unknown:
        fail(f"{where}: {', '.join(unknown)} is neither a recording rule of {rules_path} nor a "
             f"metric ringlb exposes (expr: {expr.strip()})")

for where, expr in rule_exprs:
    check_names(where, expr)

# The dashboard.
try:
    with open(dash_path) as f:
        dash = json.load(f)
except ValueError as e:
    fail(f"{dash_path} does not parse as JSON: {e}")
if dash.get("schemaVersion", 0) < 36:
    fail(f"schemaVersion {dash.get('schemaVersion')}: expected a current dashboard (~39)")
if not any(i.get("name") == "DS_PROMETHEUS" for i in dash.get("__inputs", [])):
    fail("no DS_PROMETHEUS datasource input")

variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
for v in dash.get("templating", {}).get("list", []):
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q)
    if m:
        check_names(f"variable {v['name']}", m.group(1))

def substitute(expr):
    """Grafana's variables replaced by values that keep the PromQL valid."""
    builtins = {"__rate_interval": "5m", "__interval": "1m", "__range": "7d"}
    def value(name):
        if name in builtins:
            return builtins[name]
        if name in variables:
            return "x"
        fail(f"unknown dashboard variable ${name} in: {expr}")
    e = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]",
               lambda m: value(m.group(1) or m.group(2) or m.group(3)), expr)
    return e

def all_panels(ps):
    for p in ps:
        yield p
        yield from all_panels(p.get("panels", []))

panels, exprs, ids = 0, [], set()
for p in all_panels(dash.get("panels", [])):
    if p.get("type") == "row":
        continue
    panels += 1
    if p.get("id") in ids:
        fail(f"panel id {p.get('id')} used twice")
    ids.add(p.get("id"))
    targets = p.get("targets", [])
    if not targets:
        fail(f"panel {p.get('title')!r} has no target")
    for t in targets:
        expr = t.get("expr", "")
        if not expr.strip():
            fail(f"panel {p.get('title')!r} target {t.get('refId')} has no expr")
        e = substitute(expr)
        check_names(f"panel {p.get('title')!r} target {t.get('refId')}", e)
        exprs.append((p.get("title"), t.get("refId"), e))

# One recording rule per expression: promtool parses each as PromQL. (JSON is YAML.)
check = {"groups": [{"name": "dashboard", "rules": [
    {"record": f"dashboard:expr_{i}:check", "expr": e} for i, (_, _, e) in enumerate(exprs)]}]}
with open(f"{tmp}/dashboard.rules.yml", "w") as f:
    json.dump(check, f, indent=1)
with open(f"{tmp}/counts", "w") as f:
    with open(tests_path) as t:
        tests = yaml.safe_load(t)["tests"]
    n_tests = sum(len(t.get("promql_expr_test", [])) + len(t.get("alert_rule_test", [])) for t in tests)
    f.write(f"{n_rules} {len(recorded)} {n_tests} {panels} {len(exprs)}\n")
for i, (title, ref, e) in enumerate(exprs):
    print(f"  dashboard:expr_{i}:check  {title} [{ref}]: {e}")
PY

echo "== promtool check rules (the dashboard's expressions)"
promtool check rules "$tmp/dashboard.rules.yml" || die "a dashboard expression is not valid PromQL (see above)"

read -r n_rules n_recorded n_tests n_panels n_exprs <"$tmp/counts"
echo "capacity-rules-test: OK: $n_rules rules ($n_recorded recorded) checked, $n_tests promtool tests passed, dashboard $n_panels panels / $n_exprs expressions valid PromQL over known names"
