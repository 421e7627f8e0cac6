#!/usr/bin/env bash
# The hypothesis-driven conformance tests of every reference VMM under many seeds of the dev
# profile: a VMM is not equivalent because one seed passed.  Usage: bash .ci/seeds.sh [N [FIRST]]
# runs seeds FIRST..FIRST+N-1 (default 1..20), one line per (seed, VMM, profile); exit 1 if any
# run failed (its output kept in seed-SEED-VMM-PROFILE.log where the script was started).  Narrow it with POPEK_SEED_PAIRS="hardware@vtx-2006 ..." or POPEK_SEED_TESTS (-k).
set -uo pipefail
out=$PWD  # failing runs' logs land where the script was started
cd "$(dirname "$0")/.."

count=${1:-20}
first=${2:-1}
pairs=${POPEK_SEED_PAIRS:-"native@x86-2005 emulate@x86-2005 trap-and-emulate@x86-2005 trap-and-emulate@x86-64-2005 trap-and-emulate@classic-1974 binary-translation@x86-2005 binary-translation@x86-64-2005 binary-translation@classic-1974 hardware@vtx-2006 hardware@vtx-2009 hardware-ept@vtx-2009 hardware-ept@vtx-2009+iommu paravirt@x86-2005 paravirt@x86-64-2005 paravirt@vtx-2009"}
tests=${POPEK_SEED_TESTS:-"generated or safety or stateful"}
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for seed in $(seq "$first" $((first + count - 1))); do
    for pair in $pairs; do
        vmm=${pair%@*}
        profile=${pair#*@}
        python -m pytest -q -p no:cacheprovider -n 2 conformance -k "$tests" --popek-vmm "$vmm" \
            --popek-profile "$profile" --popek-hypothesis-profile=dev --hypothesis-seed="$seed" > "$log" 2>&1
        rc=$?
        echo "seed $seed  $vmm on $profile: $(grep -v "^[[:space:]]*$" "$log" | tail -n 1)"
        [ "$rc" -eq 0 ] || cp "$log" "$out/seed-$seed-$vmm-$profile.log"
        [ "$rc" -eq 0 ] || failed=1
    done
done
exit $failed
