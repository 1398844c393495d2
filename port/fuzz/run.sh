#!/usr/bin/env bash
# Run the libFuzzer harness for FUZZ_S seconds over the corpus in $DIR
# (new inputs kept), the generated seeds and the committed regression inputs;
# crashes go to $DIR/crashes. Prints executions, coverage and crashes; exits
# 1 when libFuzzer found anything or hardly ran. Usage: run.sh BIN DIR SECONDS
set -uo pipefail
bin=$1 dir=$2 secs=$3
regress=$(dirname "$0")/regress
mkdir -p "$dir/corpus" "$dir/crashes"
rm -rf "$dir/seeds" && mkdir -p "$dir/seeds"
NICHE_FUZZ_SEEDS=$dir/seeds "$bin" >/dev/null || exit 1
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
"$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$dir/crashes/" \
    "$dir/corpus" "$dir/seeds" "$regress" >"$dir/log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
done_line=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$dir/log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
crashes=$(find "$dir/crashes" -type f -newer "$dir/seeds" | sort)
echo "fuzz: ${execs:-0} executions in ${secs} s ($(( ${execs:-0} / secs ))/s), cov ${cov:-?} ft ${ft:-?}," \
     "corpus $(ls "$dir/corpus" | wc -l) inputs, crashes $(grep -c . <<<"$crashes")"
if [ -n "$crashes" ] || [ $rc != 0 ]; then
    grep -E 'ERROR|runtime error|SUMMARY' "$dir/log" | head -20 >&2
    echo "fuzz: libFuzzer failed (rc $rc); crash inputs:" $crashes "(log: $dir/log)" >&2
    exit 1
fi
# a harness that did not run proves nothing
[ "${execs:-0}" -ge $(( secs * 100 )) ] || { echo "fuzz: only ${execs:-0} executions" >&2; exit 1; }
