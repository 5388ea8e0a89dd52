#!/usr/bin/env bash
# Runs the route compiler's lookup benchmark (route-compiler/benches/lookup.rs)
# and prints a Markdown summary of criterion's medians.
#
# Usage: bench/route-lookup.sh [--report-only] [criterion args...]
#
#   --report-only   do not run the benchmark, summarize the last results
#   criterion args  passed after the defaults, e.g. a filter: `table_lookup`
#
# Environment: BENCH_WARM_UP (s, default 1), BENCH_MEASURE (s, default 3).
# Needs cargo and jq. A full run takes about 4 minutes on 2 shared cores;
# most of it is compiling 10,000 routes (the `compile` group takes 10
# samples whatever the measurement time).
set -euo pipefail

cd "$(dirname "$0")/.."

for tool in cargo jq awk; do
    command -v "$tool" >/dev/null || {
        echo "route-lookup.sh: needs $tool" >&2
        exit 1
    }
done

run=1
if [[ "${1:-}" == "--report-only" ]]; then
    run=0
    shift
fi

target_dir=$(cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
criterion_dir="${CRITERION_HOME:-$target_dir/criterion}"
sizes="$criterion_dir/table-sizes.json"
export ROUTE_BENCH_SIZES="$sizes"

if [[ $run == 1 ]]; then
    cmd=(cargo bench -p route-compiler --bench lookup --
        --noplot
        --warm-up-time "${BENCH_WARM_UP:-1}"
        --measurement-time "${BENCH_MEASURE:-3}"
        "$@")
    echo "+ ${cmd[*]}" >&2
    "${cmd[@]}"
fi

# The median of group/n in ns, or `-` when it was not measured.
median() {
    local file="$criterion_dir/$1/$2/new/estimates.json"
    if [[ -f $file ]]; then jq -r '.median.point_estimate' "$file"; else echo -; fi
}

# A field of the sizes file for n, or `-`.
size_field() {
    if [[ -f $sizes ]]; then
        jq -r --arg n "$1" --arg f "$2" '.[$n][$f] // "-"' "$sizes"
    else
        echo -
    fi
}

rows=()
for n in 10 100 1000 10000; do
    rows+=("$n $(median table_lookup "$n") $(median list_baseline "$n") \
$(median compile "$n") $(size_field "$n" table_bytes) \
$(size_field "$n" requests_per_iteration) $(size_field "$n" dense) $(size_field "$n" compile_once_ns)")
done

printf '%s\n' "${rows[@]}" | awk '
function ns(v) {
    if (v == "" || v == "-") return "n/a"
    if (v >= 1e9) return sprintf("%.2f s", v / 1e9)
    if (v >= 1e6) return sprintf("%.1f ms", v / 1e6)
    if (v >= 1e3) return sprintf("%.1f µs", v / 1e3)
    return sprintf("%.1f ns", v)
}
function bytes(v) {
    if (v == "") return "n/a"
    if (v >= 1048576) return sprintf("%d (%.1f MiB)", v, v / 1048576)
    if (v >= 1024) return sprintf("%d (%.1f KiB)", v, v / 1024)
    return sprintf("%d B", v)
}
BEGIN {
    print "| N routes (+ catch-all) | table lookup ns/lookup | list baseline ns/lookup | speed-up | lookup(N)/lookup(10) | compile time (median) | table bytes |"
    print "|---:|---:|---:|---:|---:|---:|---:|"
}
{
    # Fields: n, lookup, list, compile, table bytes, mix, dense, one-shot
    # compile; `-` when unknown.
    for (i = 1; i <= NF; i++) if ($i == "-") $i = ""
    n = $1; mix = ($6 == "" ? 4 : $6)
    lookup = ($2 == "" ? "" : $2 / mix)
    list = ($3 == "" ? "" : $3 / mix)
    if (n == 10) base = lookup
    speed = (lookup != "" && list != "") ? sprintf((list / lookup < 10 ? "%.1f×" : "%.0f×"), list / lookup) : "n/a"
    ratio = (lookup != "" && base != "") ? sprintf("%.2f", lookup / base) : "n/a"
    compile = ($4 == "" ? "n/a" : ns($4))
    size = bytes($5) ($7 == "false" ? ", LAZY DFA" : "")
    printf "| %s | %s | %s | %s | %s | %s | %s |\n", n, (lookup == "" ? "n/a" : sprintf("%.1f", lookup)), (list == "" ? "n/a" : sprintf("%.1f", list)), speed, ratio, compile, size
    L[n] = lookup; S[n] = list; C[n] = $4; B[n] = $5
}
END {
    print ""
    printf "ns/lookup = criterion median of one iteration (a mix of %d lookups) / %d.\n", mix, mix
    print ""
    print "Targets at N = 10000:"
    check("lookup(10000) within 1.5x of lookup(10)", L[10000] != "" && L[10] != "", L[10000] <= 1.5 * L[10], sprintf("%.2fx", (L[10] ? L[10000] / L[10] : 0)))
    check("at least 50x faster than the list baseline", L[10000] != "" && S[10000] != "", S[10000] >= 50 * L[10000], sprintf("%.0fx", (L[10000] ? S[10000] / L[10000] : 0)))
    check("compiling 10000 routes under 2 s", C[10000] != "", C[10000] < 2e9, ns(C[10000]))
    check("table under 50 MB", B[10000] != "", B[10000] < 50e6, bytes(B[10000]))
}
function check(what, known, ok, value) {
    printf "- %s: %s (%s)\n", what, (!known ? "NOT MEASURED" : (ok ? "PASS" : "FAIL")), value
}
'
