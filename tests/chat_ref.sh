#!/usr/bin/env bash
# One tokenizer through the chat fixture: chat_dump's rows checked by the
# independent reference, from the .jsonl and from a .jsonl.gz copy of it.
#   chat_ref.sh CHAT_DUMP PYTHON TOKENIZER_DIR TEMPLATE EXPECTED_TEMPLATE DATA.jsonl WORK_DIR
# (TEMPLATE is what chat_dump is given, e.g. auto; EXPECTED_TEMPLATE what it must resolve to.)
set -euo pipefail
dump=$1 py=$2 tok=$3 tmpl=$4 expect=$5 data=$6 work=$7
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
gzip -c "$data" > "$work/data.jsonl.gz"
for T in 128 512; do
    trunc=1
    [ "$T" = 512 ] && trunc=0
    for input in "$data" "$work/data.jsonl.gz"; do
        "$dump" "$tok" "$tmpl" "$T" "$input" "$work/dump.json"
        jinja=()
        [ "$expect" != inst ] && jinja=(--jinja "$here/data/chat/jinja_render.json") # no Mistral template to render
        "$py" "$here/ref/chat_expected.py" "$input" "$tok" "$expect" "$work/dump.json" --truncated "$trunc" "${jinja[@]}"
    done
done
