#!/usr/bin/env bash
# Fails when git tracks a file over 1 MB or a compiled executable (ELF,
# Mach-O, PE): build outputs and large data are never committed.
# Usage: scripts/check_tree.sh [repository root, default: the current folder]
set -euo pipefail
cd "${1:-.}"
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue # deleted in the work tree
	size=$(stat -c %s "$f")
	if [ "$size" -gt "$limit" ]; then
		echo "tracked file over 1 MB: $f ($size bytes)"
		bad=1
	fi
	magic=$(od -An -tx1 -N4 "$f" | tr -d ' \n')
	case "$magic" in
	7f454c46 | feedface | feedfacf | cefaedfe | cffaedfe | 4d5a*)
		echo "tracked executable binary: $f"
		bad=1
		;;
	esac
done < <(git ls-files -z)
if [ "$bad" -ne 0 ]; then
	echo "remove them from the tree (git rm --cached) and ignore them in .gitignore"
	exit 1
fi
