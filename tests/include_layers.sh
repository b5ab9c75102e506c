#!/usr/bin/env bash
# Dependencies point one way (DESIGN.md section 4, README "Layout"): every
# #include "FOLDER/..." in the library's folders must name a folder that
# folder may use. A violation is printed as FILE:LINE and fails the test.
#   io/        io/
#   model/     io/ model/
#   dist/      io/ dist/
#   pipeline/  io/ model/ dist/ pipeline/
#   train/     io/ model/ dist/ train/
# cli/, tests/ and bench/ sit on top and may use any of them.
# usage: include_layers.sh SOURCE_DIR
set -u
cd "$1" || exit 1
declare -A may=([io]="io" [model]="io model" [dist]="io dist" [pipeline]="io model dist pipeline"
                [train]="io model dist train")
bad=0 checked=0
for dir in io model dist pipeline train; do
    while IFS=: read -r file line text; do
        used=${text#*\"}
        used=${used%%/*}
        checked=$((checked + 1))
        case " ${may[$dir]} " in
            *" $used "*) ;;
            *) echo "$file:$line: $dir/ may not include $used/ (${text})"; bad=$((bad + 1)) ;;
        esac
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[a-z_]+/' -r "$dir" --include='*.c' --include='*.h' --include='*.cu' --include='*.cuh')
done
echo "include_layers: $checked includes checked, $bad violation(s)"
[ "$bad" -eq 0 ] && [ "$checked" -gt 0 ]
