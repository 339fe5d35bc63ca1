# test/bench/lib.sh -- the vocabulary of benchmark group files.
#
# A group file (test/bench/groups/NN-name.sh) is sourced in a subshell and
# looks like this:
#
#   bench_title "hit path: the key exists"
#   bench_setup <<'SQL'
#   CREATE TABLE ...;                      -- runs once, in the bench database
#   SQL
#   bench_variant ours 1 <<'PGB'           -- name, clients, pgbench script
#   \set k random(1, 10000)
#   SELECT ... :k ...;
#   PGB
#   bench_variant plain 1 <<'PGB'
#   ...
#   PGB
#   bench_ratio ours plain 0.90            -- report ours/plain, target >= 0.90
#   bench_run                              -- rounds, medians, table, CSV
#   bench_report "lost rows under a race" 0 0   -- any extra figure: name value [target]
#
# bench_variant takes extra pgbench options after the client count (for
# example -D key=value), and --guc=NAME=VALUE for a server setting of that
# variant's sessions (passed in PGOPTIONS).  Variants run with -M prepared.
# A variant's script is kept in "$BENCH_GROUP_DIR/NAME.pgb", so a later
# variant can run the same script with other options by reading it from there.
#
# bench_command NAME CLIENTS <<'SH' declares a variant that is not a pgbench
# script but a shell snippet (run with bash, BENCH_CLIENTS, BENCH_JOBS and
# BENCH_SECONDS in its environment) that prints pgbench's two summary lines,
# "number of transactions actually processed: N" and "tps = X (without
# initial connection time)": a client of another server, for example.
#
# bench_min_rounds N (before bench_title) runs the group at least N rounds
# unless the run's rounds were chosen with --rounds.
#
# bench_regimes latency saturation (before bench_run) measures every variant
# in two regimes, in the same interleaved rounds: "latency", one client and
# one pgbench thread, and "saturation", as many clients as the variant
# declares but at least one per CPU, with one pgbench thread per CPU
# (-j $(nproc)): the CPUs are busy, so throughput there is CPU cost per call.
# The table and the ratios are printed once per regime.  bench_ratio's
# optional fourth argument is a target for the saturation regime alone (the
# third then applies to the latency regime).  Without bench_regimes every
# variant runs once per round with the clients it declares (regime "-").

BENCH_GROUP=
BENCH_GROUP_DIR=
BENCH_VARIANTS=()
BENCH_RATIOS=()
BENCH_REGIMES=(-)

bench_begin() {
	BENCH_GROUP=$1
	BENCH_GROUP_DIR=$BENCH_OUT/$1
	mkdir -p "$BENCH_GROUP_DIR"
	BENCH_VARIANTS=()
	BENCH_RATIOS=()
	BENCH_REGIMES=(-)
}

# bench_min_rounds N (before bench_title): this group runs at least N
# rounds when the rounds were not chosen with --rounds (and not in the
# smoke run): for a ratio whose per-round ratios scatter widely, so that
# its median rests on more of them.
bench_min_rounds() {
	if [ "${BENCH_SMOKE:-0}" != 1 ] && [ "${BENCH_ROUNDS_CHOSEN:-0}" != 1 ] &&
		[ "$BENCH_ROUNDS" -lt "$1" ]; then
		BENCH_ROUNDS=$1
	fi
}

# "rounds=N", N the rounds of the run, and the groups that ran another
# number of rounds (bench_min_rounds), as rounds.csv has them.
bench_rounds_ran() {
	awk -F, -v d="$BENCH_ROUNDS" 'NR > 1 && $4 > max[$1] { max[$1] = $4 }
		END { for (g in max) if (max[g] != d) s = s (s == "" ? "" : ", ") g " " max[g]
		      printf "rounds=%s%s", d, (s == "" ? "" : " (" s ")") }' "$BENCH_OUT/rounds.csv"
}

bench_title() {
	echo
	echo "== $BENCH_GROUP: $*   [$BENCH_ROUNDS rounds x $BENCH_SECONDS s, variants interleaved]"
}

bench_setup() {
	idem_psql -f - >/dev/null
}

# bench_variant NAME CLIENTS [PGBENCH OPTIONS...] <<script
bench_variant() {
	local name=$1 clients=$2
	shift 2
	cat >"$BENCH_GROUP_DIR/$name.pgb"
	printf '%s\n' "$*" >"$BENCH_GROUP_DIR/$name.opts"
	echo "$clients" >"$BENCH_GROUP_DIR/$name.clients"
	BENCH_VARIANTS+=("$name")
}

# bench_command NAME CLIENTS <<shell-snippet
bench_command() {
	local name=$1 clients=$2
	cat >"$BENCH_GROUP_DIR/$name.sh"
	: >"$BENCH_GROUP_DIR/$name.opts"
	echo "$clients" >"$BENCH_GROUP_DIR/$name.clients"
	BENCH_VARIANTS+=("$name")
}

# bench_regimes REGIME...: latency and/or saturation.
bench_regimes() {
	BENCH_REGIMES=("$@")
}

# bench_ratio NUMERATOR DENOMINATOR [MIN_TARGET [SATURATION_MIN_TARGET]]
bench_ratio() {
	BENCH_RATIOS+=("$1 $2 ${3:--} ${4:-${3:--}}")
}

# Median of the numbers on stdin.
bench_median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "min max" of the numbers on stdin.
bench_range() {
	sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR == 0) print "nan nan"; else print lo, hi }'
}

# Next transaction id, WAL insert position and WAL records written, without
# taking an xid.  The WAL record count (pg_stat_wal) is what the backends
# have reported, and a backend reports its last counts as it exits: first
# wait (up to 5 s) for the sessions of the previous run to be gone.
bench_counters() {
	idem_psql -At -c "DO \$\$ BEGIN
  FOR i IN 1..500 LOOP
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    EXIT WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity
                           WHERE datname LIKE 'idempotency\_bench%' AND backend_type = 'client backend'
                             AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid());
    PERFORM pg_catalog.pg_sleep(0.01);
  END LOOP;
END \$\$" -c "SELECT pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()), pg_catalog.pg_current_wal_insert_lsn() OPERATOR(pg_catalog.-) '0/0'::pg_catalog.pg_lsn, (SELECT wal_records FROM pg_catalog.pg_stat_wal)"
}

# Clients and pgbench threads of a variant in a regime: "clients jobs".
bench_clients() {
	local v=$1 regime=$2 clients jobs ncpu
	ncpu=$(nproc)
	clients=$(cat "$BENCH_GROUP_DIR/$v.clients")
	case $regime in
		latency) clients=1 ;;
		saturation) [ "$clients" -lt "$ncpu" ] && clients=$ncpu ;;
	esac
	jobs=$clients
	[ "$jobs" -gt "$ncpu" ] && jobs=$ncpu
	echo "$clients $jobs"
}

# bench_one VARIANT REGIME ROUND: one pgbench run; appends to rounds.csv.
bench_one() {
	local v=$1 regime=$2 round=$3 clients jobs out before after tx tps o rc
	local opts=() pgoptions=${PGOPTIONS:-}
	for o in $(cat "$BENCH_GROUP_DIR/$v.opts"); do
		case $o in
			--guc=*) pgoptions+=" -c ${o#--guc=}" ;;
			*) opts+=("$o") ;;
		esac
	done
	read -r clients jobs < <(bench_clients "$v" "$regime")
	out=$BENCH_GROUP_DIR/$v.${regime/#-/run}.round$round.log
	before=$(bench_counters)
	if [ -f "$BENCH_GROUP_DIR/$v.sh" ]; then
		BENCH_CLIENTS=$clients BENCH_JOBS=$jobs bash "$BENCH_GROUP_DIR/$v.sh" >"$out" 2>&1 && rc=0 || rc=$?
	else
		PGOPTIONS=$pgoptions "$PGBINDIR/pgbench" -n -M prepared -c "$clients" -j "$jobs" \
			-T "$BENCH_SECONDS" "${opts[@]}" -f "$BENCH_GROUP_DIR/$v.pgb" >"$out" 2>&1 && rc=0 || rc=$?
	fi
	if [ "$rc" != 0 ]; then
		echo "run failed for $BENCH_GROUP/$v:" >&2
		tail -n 20 "$out" >&2
		return 1
	fi
	after=$(bench_counters)
	if grep -q '^number of failed transactions: [1-9]' "$out"; then
		echo "pgbench reported failed transactions for $BENCH_GROUP/$v:" >&2
		tail -n 20 "$out" >&2
		return 1
	fi
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
	[ -n "$tps" ] || tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | tail -n 1)
	awk -v g="$BENCH_GROUP" -v v="$v" -v m="$regime" -v r="$round" -v c="$clients" -v tps="$tps" -v tx="$tx" \
		-v before="$before" -v after="$after" \
		'BEGIN { split(before, a, "|"); split(after, b, "|")
		         x = b[1] - a[1]; w = b[2] - a[2]; n = b[3] - a[3]
		         printf "%s,%s,%s,%d,%d,%.1f,%d,%.1f,%.2f,%.3f\n", g, v, m, r, c, tps, tx,
		                (tx ? w / tx : 0), (tx ? n / tx : 0), (tx ? x / tx : 0) }' \
		>>"$BENCH_OUT/rounds.csv"
}

# Column of rounds.csv for one variant of this group in one regime:
# bench_column VARIANT REGIME N (rounds in order)
bench_column() {
	awk -F, -v g="$BENCH_GROUP" -v v="$1" -v m="$2" -v n="$3" '$1 == g && $2 == v && $3 == m { print $4, $n }' \
		"$BENCH_OUT/rounds.csv" | sort -n | cut -d' ' -f2
}

# Per-round ratios of two variants in one regime, one a line.
bench_round_ratios() {
	paste -d' ' <(bench_column "$1" "$3" 6) <(bench_column "$2" "$3" 6) | awk '$2 > 0 { print $1 / $2 }'
}

# Does VARIANT run in REGIME?  Everywhere, except that the smoke run
# measures the saturation regime for the two variants of the group's first
# ratio only (a second or two per group).
bench_runs_in() {
	[ "${BENCH_SMOKE:-0}" = 1 ] && [ "$2" = saturation ] || return 0
	[ ${#BENCH_RATIOS[@]} -gt 0 ] || return 1
	local a b _
	read -r a b _ <<<"${BENCH_RATIOS[0]}"
	[ "$1" = "$a" ] || [ "$1" = "$b" ]
}

# Every round runs every variant in every regime once, regime by regime,
# so that the variants a ratio compares run one right after the other
# (their ratio then sees the same state of the machine); each round starts
# one run further along that order than the round before, so that no
# variant always runs first or always follows the same one.
bench_run() {
	local round i n v m runs=()
	for m in "${BENCH_REGIMES[@]}"; do
		for v in "${BENCH_VARIANTS[@]}"; do
			bench_runs_in "$v" "$m" && runs+=("$v $m")
		done
	done
	n=${#runs[@]}
	for ((round = 1; round <= BENCH_ROUNDS; round++)); do
		for ((i = 0; i < n; i++)); do
			read -r v m <<<"${runs[$(((i + round - 1) % n))]}"
			bench_one "$v" "$m" "$round" || exit 1   # the group runs in a subshell: fail it
		done
	done
	for m in "${BENCH_REGIMES[@]}"; do
		bench_table "$m"
	done
}

# The table and the ratios of one regime.
bench_table() {
	local m=$1 v tps wal rec xid clients
	case $m in
		latency) echo "-- latency: one client" ;;
		saturation) echo "-- saturation: at least $(nproc) clients (one per CPU), pgbench -j $(nproc)$(
			[ "${BENCH_SMOKE:-0}" = 1 ] && echo " (smoke: the first ratio's variants only)")" ;;
	esac
	printf '%-28s %7s %14s %12s %12s %10s\n' variant clients "tps (median)" "WAL B/call" "WAL rec/call" "xids/call"
	for v in "${BENCH_VARIANTS[@]}"; do
		bench_runs_in "$v" "$m" || continue
		tps=$(bench_column "$v" "$m" 6 | bench_median)
		wal=$(bench_column "$v" "$m" 8 | bench_median)
		rec=$(bench_column "$v" "$m" 9 | bench_median)
		xid=$(bench_column "$v" "$m" 10 | bench_median)
		read -r clients _ < <(bench_clients "$v" "$m")
		printf '%-28s %7s %14.1f %12.1f %12.2f %10.3f\n' "$v" "$clients" "$tps" "$wal" "$rec" "$xid"
		echo "$BENCH_GROUP,tps,$v,$tps,,,$m,," >>"$BENCH_OUT/summary.csv"
		echo "$BENCH_GROUP,wal_bytes_per_call,$v,$wal,,,$m,," >>"$BENCH_OUT/summary.csv"
		echo "$BENCH_GROUP,wal_records_per_call,$v,$rec,,,$m,," >>"$BENCH_OUT/summary.csv"
		echo "$BENCH_GROUP,xids_per_call,$v,$xid,,,$m,," >>"$BENCH_OUT/summary.csv"
	done

	[ ${#BENCH_RATIOS[@]} -gt 0 ] || return 0
	# Targets are judged by the full benchmark only: one short round of the
	# smoke run says nothing about speed.
	if [ "${BENCH_SMOKE:-0}" = 1 ]; then
		printf '%-28s %7s %14s %12s\n' ratio "" "median" "spread"
	else
		printf '%-28s %7s %14s %12s %12s\n' ratio "" "median" "spread" "target"
	fi
	local spec a b target sat_target ratio lo hi met
	for spec in "${BENCH_RATIOS[@]}"; do
		read -r a b target sat_target <<<"$spec"
		bench_runs_in "$a" "$m" && bench_runs_in "$b" "$m" || continue
		[ "$m" = saturation ] && target=$sat_target
		# Median of the per-round ratios: each round measures both variants
		# back to back, so pairing them cancels slow drifts of the machine.
		# The spread is the lowest and the highest per-round ratio.
		ratio=$(bench_round_ratios "$a" "$b" "$m" | bench_median)
		read -r lo hi < <(bench_round_ratios "$a" "$b" "$m" | bench_range)
		met=
		if [ "${BENCH_SMOKE:-0}" = 1 ]; then
			[ "$target" != - ] && met="not judged"
			printf '%-28s %7s %13.2fx %12s %s\n' "$a / $b" "" "$ratio" \
				"$(printf '%.2f-%.2f' "$lo" "$hi")" "${met:+(smoke: not judged)}"
		else
			if [ "$target" != - ]; then
				met=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r >= t) ? "met" : "MISSED" }')
			fi
			printf '%-28s %7s %13.2fx %12s %12s %s\n' "$a / $b" "" "$ratio" \
				"$(printf '%.2f-%.2f' "$lo" "$hi")" "${target/#-/}" "$met"
		fi
		echo "$BENCH_GROUP,ratio,$a / $b,$ratio,${target/#-/},$met,$m,$lo,$hi" >>"$BENCH_OUT/summary.csv"
	done
}

# bench_report NAME VALUE [TARGET]: any other figure a group measures.
bench_report() {
	if [ "${BENCH_SMOKE:-0}" = 1 ] && [ -n "${3:-}" ]; then
		printf '%-44s %12s %s\n' "$1" "$2" "(smoke: not judged)"
	else
		printf '%-44s %12s %12s\n' "$1" "$2" "${3:-}"
	fi
	echo "$BENCH_GROUP,figure,$1,$2,${3:-},,-,," >>"$BENCH_OUT/summary.csv"
}

# bench_chart DIR SUBTITLE: DIR/ratios.png from DIR/summary.csv, a bar per
# ratio (median of the rounds, from 1 up or down, log scale) with an error
# bar from the lowest to the highest per-round ratio and a dot at its
# target; bars of the saturation regime in another colour.  The data gnuplot reads is kept in ratios.dat.
bench_chart() {
	local dir=$1 subtitle=$2 n term
	awk -F, 'NR > 1 && $2 == "ratio" {
		label = $1 ": " $3 ($7 == "saturation" ? " [sat]" : "")
		printf "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", ++n, label, $4, ($8 == "" ? $4 : $8), ($9 == "" ? $4 : $9),
		       ($5 == "" ? "?" : $5), ($7 == "saturation") }' "$dir/summary.csv" >"$dir/ratios.dat"
	n=$(wc -l <"$dir/ratios.dat")
	[ "$n" -gt 0 ] || { echo "no ratios to chart" >"$dir/ratios.gnuplot.log"; return 1; }
	term="png size $((400 + 28 * n)),900"
	gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo && term="pngcairo size $((400 + 28 * n)),900 font 'sans,9'"
	gnuplot >"$dir/ratios.gnuplot.log" 2>&1 <<GNUPLOT
set terminal $term
set output '$dir/ratios.png'
set termoption noenhanced
set datafile separator "\t"
set datafile missing "?"
set title "idempotency: ours / alternative, median of rounds, bars min-max of the per-round ratios\n$subtitle"
set ylabel "ratio, log scale (above 1: the extension is faster)"
set logscale y 2
set ytics (0.125, 0.25, 0.5, 0.75, 1, 1.5, 2, 4, 8, 16)
set yrange [0.125:16]
set xtics rotate by -60 left nomirror
set grid ytics
set xrange [0:$((n + 1))]
set bmargin 22
set key tmargin center horizontal
set style fill solid 0.6 noborder
set arrow from 0, 1 to $((n + 1)), 1 nohead dt 2 lc rgb "#555555"
# a bar goes from 1 to the ratio: up where the extension is faster
plot '$dir/ratios.dat' using 1:(\$7 == 0 ? \$3 : 1/0):(\$1 - 0.35):(\$1 + 0.35):(1):3:xtic(2) with boxxyerror lc rgb "#4477aa" title "one client / as declared", \
     '' using 1:(\$7 == 1 ? \$3 : 1/0):(\$1 - 0.35):(\$1 + 0.35):(1):3 with boxxyerror lc rgb "#ee6677" title "CPU saturation", \
     '' using 1:3:4:5 with yerrorbars lc rgb "black" ps 0 title "min-max of rounds", \
     '' using 1:6 with points pt 7 ps 0.8 lc rgb "#228833" title "target"
GNUPLOT
}
