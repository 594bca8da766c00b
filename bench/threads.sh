#!/bin/bash
# Per-thread CPU of one command, by thread name: the CPU seconds (user, system) each kind of thread
# had used at the last sample before the command exited (sampled every 50 ms from
# /proc/PID/task/*/stat; a thread that ended earlier keeps its last sample). CPU profiles
# (--cpu-prof) sample wall time per thread: on a machine with more runnable threads than cores a
# thread waiting for a core looks busy there; this says what each really used.
#   bench/threads.sh COMMAND [ARGS...]     (the command's output goes to $THREADS_OUT, default /tmp/threads.out)
# Names: MainThread (JS main thread), WorkerThread (worker_threads: walker, seal workers),
# V8Worker (V8's helpers: concurrent marking and sweeping, compilation), libuv-worker (fs calls).
out=${THREADS_OUT:-/tmp/threads.out}
"$@" > "$out" 2>&1 &
pid=$!
declare -A last
while kill -0 $pid 2>/dev/null; do
  for t in /proc/$pid/task/*; do
    tid=${t##*/}
    s=$(cat "$t/stat" 2>/dev/null) || continue
    name=$(cat "$t/comm" 2>/dev/null) && [ -n "$name" ] || continue
    rest=${s#*) }
    set -- $rest
    last[$tid]="${name// /_} ${12} ${13}"
  done
  sleep 0.05
done
wait $pid
status=$?
hz=$(getconf CLK_TCK)
for k in "${!last[@]}"; do echo "${last[$k]}"; done | awk -v hz="$hz" '{n[$1]++; u[$1]+=$2; s[$1]+=$3} END {for (k in u) printf "%-18s threads %2d  user %6.2f s  sys %6.2f s\n", k, n[k], u[k]/hz, s[k]/hz}' | sort -k5 -nr
echo "exit $status (output in $out)"
