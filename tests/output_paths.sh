#!/usr/bin/env bash
# Output paths are checked before any work (issue 18): convert --save-path,
# finetune --save-path and tokenize --output are refused in one line, with
# exit status 1 and nothing written, when they are, contain or lie inside
# an input (also through a symlink or "x/../"), are a device, a FIFO or a
# file where a folder goes (or a folder where a file goes), a mount point
# (convert: its output is renamed into place), empty, "." or "/". Before the
# fix `convert --save-path MODEL --overwrite` replaced the model with its
# output and `--save-path /dev/null --overwrite` (as root) replaced the
# device node; a trailing slash, "" and a mount point failed only at the
# final rename.
# usage: output_paths.sh TRANSMLA
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null; rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
. "$here/lib.sh"

cd "$work" || exit 1
mkdir m && cp "$here"/../data/models/stories260K/* m/
cp "$here"/../data/models/bytelm-dev/tokenizer.json m/ # tokenize needs one; convert ignores it
ln -s m link
mkfifo fifo
echo "a little text" >in.txt
sums() { sha256sum m/* in.txt; }
before=$(sums)
mounted=0
mkdir mnt && mount -t tmpfs -o size=1m tmpfs mnt 2>/dev/null && mounted=1

# refused NAME PATTERN COMMAND...: exit 1, one line matching, no progress
refused() {
    local name=$1 pat=$2 out rc lines; shift 2
    out=$("$@" 2>&1); rc=$?
    lines=$(printf '%s\n' "$out" | grep -c .)
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && printf '%s' "$out" | grep -q -- "$pat"; then ok "$name: $out"
    else bad "$name: exit $rc, $lines line(s), wanted 1 matching '$pat'"; printf '%s\n' "$out" | tail -n 3 | sed 's/^/      | /'; fi
}
conv=(convert --model-path m --cal-tokens m/calib.u16 --cal-nsamples 4 --cal-max-seqlen 64 --eval-tokens m/eval.u16
      --ppl-seqlen 64 --eval-nsamples 2 --qk-mqa-dim 4 --kv-lora-rank 16 --rorope-fit-steps 2 --attn-fit-steps 2 --overwrite)
refused "convert into the model folder" "is the input m" "$bin" "${conv[@]}" --save-path m
refused "convert into the model folder/" "is the input m" "$bin" "${conv[@]}" --save-path m/
refused "convert into a symlink to the model" "is the input m" "$bin" "${conv[@]}" --save-path link
refused "convert into new/../m" "is the input m" "$bin" "${conv[@]}" --save-path new/../m
refused "convert inside the model folder" "lies inside the input m" "$bin" "${conv[@]}" --save-path m/out
refused "convert over the model's parent" "contains the input m" "$bin" "${conv[@]}" --save-path "$work"
refused "convert over /dev/null" "/dev/null: exists and is not a folder" "$bin" "${conv[@]}" --save-path /dev/null
refused "convert over a FIFO" "fifo: exists and is not a folder" "$bin" "${conv[@]}" --save-path fifo
refused "convert over a file" "in.txt: exists and is not a folder" "$bin" "${conv[@]}" --save-path in.txt
refused "convert to ''" "is empty" "$bin" "${conv[@]}" --save-path ""
refused "convert to ." "names no output of its own" "$bin" "${conv[@]}" --save-path .
refused "convert to /" "names no output of its own" "$bin" "${conv[@]}" --save-path /
if [ "$mounted" = 1 ]; then
    refused "convert over a mount point" "is a mount point" "$bin" "${conv[@]}" --save-path mnt
else echo "skip  convert over a mount point: this machine cannot mount a tmpfs"; fi
[ -e new ] && bad "new/../m created new/" || ok "nothing was created for new/../m"

ft=(finetune --model-path m --tokens m/calib.u16 --max-steps 1 --seq-len 32 --batch-size 1)
refused "finetune into the model folder" "is the input m" "$bin" "${ft[@]}" --save-path m/
refused "finetune inside the model folder" "lies inside the input m" "$bin" "${ft[@]}" --save-path m/ft
refused "finetune over /dev/null" "exists and is not a folder" "$bin" "${ft[@]}" --save-path /dev/null

tok=(tokenize --tokenizer m --input in.txt --overwrite)
refused "tokenize over its input" "is the input in.txt" "$bin" "${tok[@]}" --output in.txt
refused "tokenize over tokenizer.json" "is the input m/tokenizer.json" "$bin" "${tok[@]}" --output m/tokenizer.json
refused "tokenize over /dev/null" "/dev/null: exists and is not a regular file" "$bin" "${tok[@]}" --output /dev/null
mkdir d
refused "tokenize over a folder" "d: exists and is not a regular file" "$bin" "${tok[@]}" --output d
rmdir d
refused "tokenize to ''" "is empty" "$bin" "${tok[@]}" --output ""

[ "$(sums)" = "$before" ] && ok "the inputs are unchanged" || bad "an input changed"
[ -c /dev/null ] && ok "/dev/null is still a device" || bad "/dev/null is no longer a device"
left=$(ls -A | grep -v -x -e m -e link -e fifo -e in.txt -e mnt)
[ -z "$left" ] && ok "nothing written beside" || bad "left behind: $left"

# accepted: a trailing slash is the folder itself (its work folder beside it)
if "$bin" "${conv[@]}" --rorope-fit-steps 0 --freqfold 2 --save-path out/ts/ --quiet >/dev/null 2>log && [ -f out/ts/config.json ] &&
   [ ! -e out/ts.work ] && [ -z "$(ls -A out/ts | grep -e '\.work' -e '\.tmp')" ]; then ok "--save-path out/ts/ writes out/ts"
else bad "--save-path out/ts/"; tail -n 3 log; fi
"$bin" tokenize --tokenizer m --input in.txt --output set.h5/ --quiet && [ -f set.h5 ] && ok "--output set.h5/ writes set.h5" ||
    bad "--output set.h5/"

echo "output_paths: $fails failure(s)"
[ "$fails" -eq 0 ]
