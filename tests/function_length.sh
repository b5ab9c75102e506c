#!/usr/bin/env bash
# No function in the library or the CLI is longer than 80 lines (issue 19;
# tests/ and bench/ are exempt). A function runs from a line that starts its
# definition at column 0 to the first "}" at column 0; each one over the
# bound is printed as FILE:LINE, its length and its first line, and fails
# the test.
#   usage: function_length.sh SOURCE_DIR
set -u
cd "$1" || exit 1
out=$(find io model dist pipeline train cli -name '*.c' | sort | xargs awk '
    FNR == 1 { start = 0 }
    /^[A-Za-z_].*\) \{$/ || /^[A-Za-z_].*\($/ || /^[A-Za-z_].*,$/ { if (!start) { start = FNR; head = $0 } }
    /^[A-Za-z_].*;$/ && !/\{/ { if (start == FNR) start = 0 }
    /^}/ && start { n++; if (FNR - start + 1 > 80) printf "%s:%d: %d lines: %s\n", FILENAME, start, FNR - start + 1, substr(head, 1, 80); start = 0 }
    END { printf "checked %d\n", n }')
echo "$out" | grep -v '^checked' || true
checked=$(echo "$out" | sed -n 's/^checked //p')
bad=$(echo "$out" | grep -vc '^checked')
echo "function_length: $checked functions checked, $bad over 80 lines"
[ "$bad" -eq 0 ] && [ "$checked" -gt 100 ]
