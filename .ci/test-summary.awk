# Closing summary of a `cargo test` log (stdout and stderr together): passed and failed
# tests per test binary, the totals, and every failed test by name. A binary that printed
# no "test result:" line (it crashed, hung and was killed, or did not build) counts as failed.
#
# Usage: awk -f .ci/test-summary.awk LOG    (exit status 1 when anything failed)

/^ *Running / {
    # "Running tests/admin.rs (target/...)" or "Running unittests src/lib.rs (target/...)"
    cur = ($2 == "unittests") ? $2 " " $3 : $2
    names[++n] = cur
    next
}
/^ *Doc-tests / {
    cur = "doc-tests " $2
    names[++n] = cur
    next
}
/^test .* \.\.\. FAILED$/ {
    t = $0
    sub(/^test /, "", t)
    sub(/ \.\.\. FAILED$/, "", t)
    failed_tests[++nf] = cur ": " t
    next
}
/^test result:/ {
    for (i = 1; i < NF; i++) {
        if ($(i + 1) ~ /^passed;?$/) passed[cur] = $i
        if ($(i + 1) ~ /^failed;?$/) failed[cur] = $i
    }
    finished[cur] = 1
}
END {
    width = 10
    for (i = 1; i <= n; i++) if (length(names[i]) > width) width = length(names[i])
    print "==> test binaries:"
    unfinished = 0
    for (i = 1; i <= n; i++) {
        b = names[i]
        if (b in finished) {
            printf "    %-" width "s  %4d passed, %d failed\n", b, passed[b], failed[b]
            total_p += passed[b]
            total_f += failed[b]
        } else {
            printf "    %-" width "s  NO RESULT (crashed, killed or not built)\n", b
            unfinished++
        }
    }
    printf "==> total: %d passed, %d failed in %d test binaries", total_p, total_f, n
    if (unfinished) printf ", %d without a result", unfinished
    printf "\n"
    if (nf) {
        print "==> failed tests:"
        for (i = 1; i <= nf; i++) print "    " failed_tests[i]
    }
    exit (total_f || unfinished || n == 0) ? 1 : 0
}
