#!/usr/bin/env bash
# Fails if a control-plane process (or a kube-reloader started by a test) outlived the test
# process that started it. Every such process refers to its run directory
# $TMPDIR/kube-reloader-testenv/<owner-pid>-<n> in its arguments or environment; a process
# whose owner pid is gone is a leftover. Control planes of live processes (e.g. a running
# `make cluster`) are not leftovers.
set -euo pipefail
root="${TMPDIR:-/tmp}/kube-reloader-testenv/"
leftovers=0
for proc in /proc/[0-9]*; do
  pid="${proc#/proc/}"
  [ "$pid" = "$$" ] && continue
  text="$( { tr '\0' ' ' < "$proc/cmdline"; tr '\0' ' ' < "$proc/environ"; } 2>/dev/null)" || true
  case "$text" in *"$root"*) ;; *) continue ;; esac
  owner="$(grep -o "${root}[0-9]*-" <<<"$text" | head -n1 | sed -e "s|${root}||" -e 's|-$||')"
  [ -n "$owner" ] || continue
  if [ ! -d "/proc/$owner" ]; then
    echo "leftover process $pid (its test process $owner is gone): $( { tr '\0' ' ' < "$proc/cmdline"; } 2>/dev/null | cut -c1-160)" >&2
    leftovers=1
  fi
done
if [ "$leftovers" -ne 0 ]; then
  echo "no-leftovers: FAILED: processes outlived their tests (kill them with: pkill -f $root)" >&2
  exit 1
fi
echo "no-leftovers: no control-plane process outlived its test run"
